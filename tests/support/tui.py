"""Helpers for driving the terminal app under Textual's Pilot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

from nexus_app.config import Settings
from tests.support.gateways import make_settings

SIZE = (110, 34)


def tui_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of an app with its own data dir and config file (nothing set up yet)."""
    return make_settings(tmp_path / "data", config=tmp_path / "config.toml", prices={},
                         **overrides)


async def wait_until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 30,
                     what: str = "condition") -> None:
    """Let the app run until `condition()` holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def text_of(pilot: Pilot[Any], selector: str) -> str:
    """The text a Static-like widget on the current screen shows."""
    widget = pilot.app.screen.query_one(selector, Static)
    return str(widget.render())
