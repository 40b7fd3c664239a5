"""Where settings come from, before they are validated: the TOML config file, `NEXUS_*`
environment variables and command-line flags; later sources win.

`config.py` validates the merge into `Settings` (pydantic). This module stays free of
pydantic, so that the terminal app can read the one or two values its first frame needs
(`Sources.peek`) and pay for validation after that frame is on the screen.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "nexus-app"
ENV_PREFIX = "NEXUS_"


class ConfigError(Exception):
    """The configuration file or environment holds an invalid value."""


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in the TOML file at `path`; none when it does not exist."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    import tomllib  # here: a first run, which has no file, starts without it

    with fh:
        try:
            return tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc


@dataclass(frozen=True)
class Sources:
    """The settings as given: command-line `flags` (None values mean not given) and the
    environment."""

    flags: Mapping[str, Any] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)

    def given_flags(self) -> dict[str, Any]:
        return {name: value for name, value in self.flags.items() if value is not None}

    def env(self, name: str) -> str | None:
        return self.environ.get(ENV_PREFIX + name.upper())

    @property
    def config_path(self) -> Path:
        return Path(self.flags.get("config") or self.env("config") or default_config_file())

    @functools.cached_property
    def file_values(self) -> dict[str, Any]:
        """The config file's settings, read once (ConfigError when it cannot be read)."""
        return read_config_file(self.config_path)

    def peek(self, name: str) -> Any:
        """One plain setting as given, unvalidated (None when not given anywhere). A config
        file that cannot be read counts as not giving it: `config.settings_from` reports it."""
        if self.flags.get(name) is not None:
            return self.flags[name]
        if (value := self.env(name)) is not None:
            return value
        try:
            return self.file_values.get(name)
        except ConfigError:
            return None
