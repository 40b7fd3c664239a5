"""Settings: one typed object built from defaults, a TOML file, `NEXUS_*` env vars and CLI flags.

Later sources win: defaults < config file < environment < command-line flags.
Paths default to the platform's directories (`platformdirs`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from nexus_app.config_gateway import GatewaySettings
from nexus_app.config_sources import (
    ENV_PREFIX,
    ConfigError,
    Sources,
    default_data_dir,
    read_config_file,
)
from nexus_app.env_json import is_json_type

FlashAttention = Literal["auto", "on", "off"]


class Settings(GatewaySettings):
    """Every setting of nexus-app: the gateway's (`GatewaySettings`), then those of every face,
the clients, the terminal app and the worker. Each is also `NEXUS_<NAME>` in the environment."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="ledger, wallets, local chain, models (default: the platform's user data "
        "folder, e.g. ~/.local/share/nexus-app)",
    )
    config: Path | None = Field(
        None, description="TOML config file (default: the platform's user config folder, e.g. "
        "~/.config/nexus-app/config.toml)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="least severe log records shown"
    )

    # clients and worker
    gateway_url: str = Field("http://127.0.0.1:8080", description="gateway used by clients")
    wallet: Path | None = Field(None, description="Solana keypair file (default: in data dir)")

    # terminal app
    network: Literal["local", "remote"] | None = Field(
        None, description="what the terminal app uses: 'local' runs a gateway and chain in "
        "this process, 'remote' the server at gateway_url (unset: asked on first run)"
    )
    api_key: SecretStr | None = Field(
        None, description="API key the terminal app chats with (stored in the config file, "
        "mode 0600)"
    )
    theme: str = Field("textual-dark", description="terminal app colour theme")

    # worker
    models: list[str] = Field(
        default_factory=list,
        description="GGUF files or model ids to serve, optionally ID=PATH (default: the bundled "
        "SmolLM2)",
    )
    models_dir: Path | None = Field(None, description="folder of GGUF files (default: data dir)")
    slots: int = Field(4, ge=1, le=64, description="jobs decoded together per model")
    threads: int | None = Field(None, ge=1, description="CPU threads for decoding (default: all)")
    context_per_slot: int = Field(4096, ge=256, description="context tokens of each slot")
    slot_prompt_similarity: float = Field(
        0.5, ge=0, le=1, description="share of its cache a slot must keep for a job that "
        "shares only part of its prompt with it to take it over the least recently used one "
        "(prompt-prefix reuse)")
    gpu_layers: int = Field(-1, ge=-1, description="layers offloaded to the GPU (-1: all)")
    flash_attention: FlashAttention = Field(
        "auto", description="llama.cpp's flash attention: auto (off for a model on the CPU, "
        "where it makes long prompts several times slower; llama.cpp's choice on a GPU), on "
        "(less memory for long contexts), off")
    status_interval_s: float = Field(5.0, gt=0, description="worker status frame period")
    reconnect_max_s: float = Field(30.0, gt=0, description="longest wait between reconnects")
    drain_timeout_s: float = Field(60.0, gt=0, description="wait for jobs to finish on stop")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def treasury_path(self) -> Path:
        return self.treasury_keypair or self.data_dir / "treasury.json"

    @property
    def webhook_key_path(self) -> Path:
        return self.data_dir / "webhook-signing.key"

    @property
    def local_chain_path(self) -> Path:
        return self.data_dir / "local-chain.sqlite3"

    @property
    def wallet_path(self) -> Path:
        return self.wallet or self.data_dir / "wallet.json"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"


def _env_values(sources: Sources) -> dict[str, Any]:
    """Read `NEXUS_<NAME>` for each field; tables and lists (prices, models) are JSON."""
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = sources.env(name)
        if raw is None:
            continue
        if is_json_type(field.annotation):
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be JSON: {exc}") from exc
        else:
            values[name] = raw
    return values


def save_config(path: Path, values: dict[str, Any]) -> None:
    """Write `values` into the TOML config file at `path`, keeping its other settings; the
    file is private to the user (mode 0600) since it may hold an API key. A value of None
    removes the setting."""
    current = read_config_file(path)
    for name, value in values.items():
        if name not in Settings.model_fields:
            raise ConfigError(f"unknown setting '{name}'")
        if value is None:
            current.pop(name, None)
        else:
            current[name] = str(value) if isinstance(value, Path) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        tomli_w.dump(current, fh)
    os.replace(temporary, path)


def load_settings(overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Build the settings; `overrides` are command-line flags (None values are ignored)."""
    return settings_from(Sources(overrides or {}, os.environ if environ is None else environ))


def settings_from(sources: Sources) -> Settings:
    """Validate what `sources` give into the settings (ConfigError says what is wrong)."""
    config_path = sources.config_path
    merged = {**sources.file_values, **_env_values(sources), **sources.given_flags(),
              "config": config_path}
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in err["loc"]) + ": " * bool(err["loc"]) + err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
