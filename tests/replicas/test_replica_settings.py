"""The settings of a replica: sharing Redis needs the shared chain over RPC."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_app.config import ConfigError, load_settings
from tests.support.redis_server import REDIS_URL


def test_replicas_on_the_local_chain_are_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--chain rpc.*nexus-app chain"):
        load_settings({"data_dir": tmp_path, "config": tmp_path / "absent.toml",
                       "redis_url": REDIS_URL}, environ={})


def test_without_redis_the_gateway_keeps_everything_in_its_process(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path, "config": tmp_path / "absent.toml"},
                             environ={})
    assert settings.redis_url is None and settings.chain == "local"
