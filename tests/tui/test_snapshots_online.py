"""SVG snapshots of the screens online (`pytest --snapshot-update` after an intended change of
the UI): the app's link is tests/support/fixed_network.py's FixedLink, whose answers never
change, its clock is fixed and its time zone UTC, so each screen shows the same thing every
run: a chat with a reply, the worker online with its plots, the wallet with deposits, the
keys and the network."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from nexus_app.tui.app import NexusApp
from nexus_app.tui.screens import worker
from nexus_app.tui.screens.chat import MessageView
from nexus_app.tui.telemetry import Telemetry
from nexus_app.worker.status import NodeStatus
from tests.support.fake_nvml import FakeGpu, FakeNvml
from tests.support.fixed_network import MODEL, NOW, FixedLink, dashboard_samples
from tests.support.tui import SIZE, tui_settings, wait_until


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def online_app(tmp_path: Path) -> NexusApp:
    settings = tui_settings(tmp_path, network="remote", gateway_url="https://gateway.example",
                            wallet=Path("/nexus/wallet.json"))
    nvml = FakeNvml([FakeGpu("NVIDIA GeForce RTX 4090 (fake)", 24 << 30, 18 << 30, 83, 68,
                             265_000)])
    app = NexusApp(settings, nvml=nvml, clock=lambda: NOW)
    app.link = FixedLink(settings)
    return app


async def online(pilot: Any) -> None:
    await wait_until(pilot, lambda: pilot.app.connection.state == "online", what="online")


async def steady(pilot: Any) -> None:
    """Stop the text cursors blinking (a snapshot would catch them on or off), then let the
    screen settle."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause(0.3)


def test_chat_with_a_reply(snap_compare: Any, tmp_path: Path) -> None:
    async def ask(pilot: Any) -> None:
        app = pilot.app
        await online(pilot)
        await wait_until(pilot, lambda: app.screen.query_one("#model").value == MODEL)
        app.screen.query_one("#prompt", Input).value = "Name three colours."
        await pilot.press("enter")
        await wait_until(pilot, lambda: "NEXUS" in str(
            app.screen.query(MessageView).last().query_one(".note").render()), what="reply")
        await steady(pilot)

    assert snap_compare(online_app(tmp_path), terminal_size=SIZE, run_before=ask)


def test_worker_online_with_plots(snap_compare: Any, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "HARDWARE_REFRESH_S", 3600.0)  # only the fixed samples

    async def dashboard(pilot: Any) -> None:
        app = pilot.app
        await online(pilot)
        await pilot.press("f5")
        screen = app.screen
        await wait_until(pilot, lambda: screen.probe is not None, what="the GPU probe")
        await wait_until(pilot, lambda: screen.history is not None, what="earnings")
        app.jobs_by_model = {MODEL: 37}
        app.node_status = NodeStatus(state="online", gateway_url="https://gateway.example",
                                     worker_id="wkr_5f2c9a", accelerator="cuda",
                                     jobs_active=1, jobs_served=37, tokens_generated=5120,
                                     tokens_per_s=212.4)
        screen.telemetry = Telemetry()
        for sample in dashboard_samples():
            screen.telemetry.add(sample)
        screen.show_telemetry(NOW)
        await steady(pilot)

    assert snap_compare(online_app(tmp_path), terminal_size=SIZE, run_before=dashboard)


@pytest.mark.parametrize(("key", "table", "rows"), [("f3", "#deposits", 2), ("f4", "#keys", 2),
                                                    ("f6", "#models", 1)])
def test_account_screens_online(snap_compare: Any, tmp_path: Path, key: str, table: str,
                                rows: int) -> None:
    async def open_screen(pilot: Any) -> None:
        await online(pilot)
        await pilot.press(key)
        await wait_until(pilot, lambda: len(pilot.app.screen.query(table)) == 1 and pilot.app
                         .screen.query_one(table, DataTable).row_count == rows, what=table)
        await steady(pilot)

    assert snap_compare(online_app(tmp_path), terminal_size=SIZE, run_before=open_screen)
