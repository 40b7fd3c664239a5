"""The key bar at the bottom of every screen: the keys the screen answers to now, clickable."""

from __future__ import annotations

from pathlib import Path

from nexus_app.tui.app import NexusApp
from nexus_app.tui.key_bar import KeyBar
from tests.support.tui import CLOSED, SIZE, text_of, tui_settings, wait_until


def keys_of(app: NexusApp) -> list[str]:
    return [binding.key for binding, _ in app.screen.query_one(KeyBar).shown()]


async def test_the_bar_follows_the_screen_and_a_click_presses_the_key(tmp_path: Path) -> None:
    app = NexusApp(tui_settings(tmp_path, network="remote", gateway_url=CLOSED))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.connection.state == "unreachable", what="unreachable")
        chat = keys_of(app)
        assert "ctrl+n" in chat and "f1" in chat and chat[-1] == "ctrl+p"  # the palette last
        assert len(chat) == len(set(chat))
        bar_text = text_of(pilot, "KeyBar")
        assert bar_text.startswith(" ^d Delete  ^n New chat ")
        # more keys than the width: they end in an ellipsis, the palette's stays at the right
        assert len(bar_text) == SIZE[0] and bar_text.rstrip().endswith("… ^p palette")

        await pilot.press("f3")  # the wallet has no "new chat"
        await wait_until(pilot, lambda: type(app.screen).__name__ == "WalletScreen")
        await pilot.pause()
        assert "ctrl+n" not in keys_of(app) and "f1" in keys_of(app)

        column = text_of(pilot, "KeyBar").index(" f1 Help")
        await pilot.click(KeyBar, offset=(column + 1, 0))
        await wait_until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", what="help")
