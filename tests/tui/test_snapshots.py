"""SVG snapshots of every screen at a fixed terminal size (`pytest --snapshot-update` after
an intended change of the UI). The app points at a closed port so that what each screen
shows without a network is fixed: the chat still opens, NEXUS-only screens say why not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nexus_app.tui.app import NexusApp
from nexus_app.tui.conversations import ChatTurn, ConversationStore
from tests.support.tui import CLOSED, SIZE, tui_settings


def app_for(tmp_path: Path, **overrides: Any) -> NexusApp:
    settings = tui_settings(tmp_path, gateway_url=CLOSED,
                            wallet=Path("/nexus/wallet.json"), **overrides)
    return NexusApp(settings)


async def settle(pilot: Any) -> None:
    """Until the connection is decided, with the text cursors steady."""
    app = pilot.app
    while app.connection.state in ("setup", "connecting") and app.link.settings.network:
        await pilot.pause(0.05)
    await steady(pilot, 0.2)


async def steady(pilot: Any, pause: float) -> None:
    """Stop the text cursors of the screen blinking (a snapshot would catch them on or off
    depending on how long the machine took), then let it settle."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    await pilot.pause(pause)


def test_welcome(snap_compare: Any, tmp_path: Path) -> None:
    async def choices_shown(pilot: Any) -> None:  # they follow the first frame
        while not pilot.app.screen.query("#local"):
            await pilot.pause(0.02)
        await steady(pilot, 0.2)

    assert snap_compare(app_for(tmp_path), terminal_size=SIZE, run_before=choices_shown)


def test_chat_with_a_stored_conversation(snap_compare: Any, tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "data" / "conversations.sqlite3")
    conversation = store.create("Colours")
    store.add(conversation.id, ChatTurn("user", "Name three colours."))
    store.add(conversation.id, ChatTurn("assistant", "**Red**, green and blue.", None, 7))
    store.close()
    assert snap_compare(app_for(tmp_path, network="remote"), terminal_size=SIZE,
                        run_before=settle)


@pytest.mark.parametrize("key", ["f3", "f4", "f5", "f6", "f7", "f1"])
def test_screen(snap_compare: Any, tmp_path: Path, key: str) -> None:
    async def open_screen(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press(key)
        await steady(pilot, 0.3)

    assert snap_compare(app_for(tmp_path, network="remote"), terminal_size=SIZE,
                        run_before=open_screen)
