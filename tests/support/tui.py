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
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens there


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


async def choose_local(pilot: Pilot[Any]) -> None:
    """Press the welcome screen's "Local network" button once it is shown (it follows the
    first frame)."""
    await wait_until(pilot, lambda: bool(pilot.app.screen.query("#local")),
                     what="the welcome screen's choices")
    await pilot.click("#local")


async def local_network_serving(pilot: Pilot[Any], deposit: str = "25") -> None:
    """From the welcome screen: the local network, the faucet, a deposit of `deposit` NEXUS
    into credit, then the worker switched on with the bundled model (until it is online)."""
    from textual.widgets import Input

    app = pilot.app
    await choose_local(pilot)
    await wait_until(pilot, lambda: app.connection.state == "online", 60, "the network")
    await wait_until(pilot, lambda: "Credit" in text_of(pilot, "#wallet-summary"))
    await pilot.press("ctrl+f")
    await wait_until(pilot, lambda: "100.000000 NEXUS ·" in text_of(pilot, "#wallet-summary"),
                     what="the faucet")
    app.screen.query_one("#amount", Input).value = deposit
    await pilot.click("#deposit")
    await wait_until(pilot, lambda: "credited" in text_of(pilot, "#deposit-result"),
                     what="the deposit")
    await pilot.press("f5")
    await wait_until(pilot, lambda: "smollm2" in str(
        app.screen.query_one("#worker-model").value), what="the bundled model")
    await pilot.press("ctrl+t")
    await wait_until(pilot, lambda: "online" in text_of(pilot, "#worker-state"), 90,
                     "the worker online")
