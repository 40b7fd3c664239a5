"""The terminal app's start-up: its first screen (the welcome screen of a first run, the chat
of a returning user) is drawn before pydantic loads and before the settings are validated;
settings found invalid then still end the app with a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from nexus_app.config_sources import ConfigError, Sources
from nexus_app.tui import app as tui_app
from nexus_app.tui.app import NexusApp, run_tui
from nexus_app.tui.conversations import ConversationStore
from nexus_app.tui.screens.chat_views import ConversationItem

FIRST_FRAME_MODULES = ("nexus_app.cli", "nexus_app.tui.app", "nexus_app.tui.screens.welcome")


def loaded_by(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has loaded after importing `modules`."""
    probe = (f"import json, sys\nfor name in {modules!r}: __import__(name)\n"
             f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return list(json.loads(run.stdout))


def test_the_first_frame_loads_neither_pydantic_nor_the_network_clients() -> None:
    assert loaded_by(FIRST_FRAME_MODULES, ("pydantic", "httpx", "solders", "llama_cpp")) == []


def test_a_returning_users_chat_loads_markdown_and_the_dialogs_when_first_used() -> None:
    """markdown-it and pygments come with the first message shown, the text area with the
    chat settings dialog: an empty chat's first frame does without them."""
    chat = ("nexus_app.tui.app", "nexus_app.tui.screens.chat")
    watched = ("markdown_it", "pygments", "textual.widgets._text_area", "pydantic", "httpx")
    assert loaded_by(chat, watched) == []


def sources(tmp_path: Path, **environ: str) -> Sources:
    return Sources({"data_dir": tmp_path, "config": tmp_path / "config.toml"}, environ)


async def test_a_first_run_fills_the_gateway_url_once_the_settings_are_valid(
        tmp_path: Path) -> None:
    app = NexusApp(sources(tmp_path, NEXUS_GATEWAY_URL="http://gateway.test:9000"))
    assert app.link.peek("network") is None and not app.settings_ready
    async with app.run_test(size=(110, 34)) as pilot:
        while not app.screen.query("#url"):
            await pilot.pause(0.02)
        await pilot.pause(0.05)
        assert app.settings_ready
        assert app.screen.query_one("#url", Input).value == "http://gateway.test:9000"
        assert app.focused is app.screen.query_one("#local", Button)


@pytest.mark.parametrize("network", [None, "local"], ids=["first run", "returning user"])
async def test_invalid_settings_found_after_the_first_frame_end_the_app_with_the_error(
        tmp_path: Path, network: str | None) -> None:
    given = {"NEXUS_SLOTS": "many"} | ({"NEXUS_NETWORK": network} if network else {})
    app = NexusApp(sources(tmp_path, **given))
    async with app.run_test(size=(110, 34)) as pilot:
        for _ in range(100):
            if app.return_code is not None:
                break
            await pilot.pause(0.02)
    assert app.return_code == 1


async def test_a_returning_users_chat_is_drawn_from_the_data_dir_before_validation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ConversationStore(tmp_path / "conversations.sqlite3").create("kept from yesterday")
    monkeypatch.setattr(NexusApp, "on_ready", lambda app: None)  # validated below, by hand
    app = NexusApp(sources(tmp_path, NEXUS_NETWORK="remote",
                           NEXUS_GATEWAY_URL="http://127.0.0.1:9"))
    async with app.run_test(size=(110, 34)) as pilot:
        await pilot.pause()
        assert not app.settings_ready
        titles = [item.conversation.title for item in app.screen.query(ConversationItem)]
        assert titles == ["kept from yesterday"]
        assert app.connection.state == "setup"
        assert app.validate_settings()  # what the first frame's callback does
        await pilot.pause(0.05)
        assert app.connection.state != "setup"  # then it connects to the chosen network


def test_a_data_dir_that_is_not_a_path_is_refused_before_the_app_starts(
        tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("data_dir = 5\n")
    with pytest.raises(ConfigError, match="data_dir"):
        run_tui(Sources({"config": tmp_path / "config.toml"}, {}))


async def test_a_choice_made_before_the_late_validation_connects_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user quicker than the validation after the first frame (seen with the frozen
    binary): the validation must not start a second local network beside the first."""
    connects: list[object] = []
    monkeypatch.setattr(NexusApp, "reconnect", lambda app: connects.append(app.settings.network))
    monkeypatch.setattr(tui_app, "FIRST_FRAME_WRITTEN_S", 60.0)  # the validation comes late
    app = NexusApp(sources(tmp_path))
    async with app.run_test(size=(110, 34)) as pilot:
        while not app.screen.query("#local"):
            await pilot.pause(0.02)
        await pilot.click("#local")
        await pilot.pause()
        assert app.validate_settings()  # what the late callback does
        await pilot.pause()
    assert connects == ["local"]


@pytest.mark.parametrize("quit_at_once", [False, True], ids=["validated", "quit before"])
async def test_the_start_switches_threads_faster_until_the_settings_are_validated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quit_at_once: bool) -> None:
    """Textual's output thread gets the GIL sooner while the start keeps this one busy; Python's
    own switch interval is back once the settings are validated, or when the app ends first."""
    monkeypatch.setattr(tui_app, "FIRST_FRAME_WRITTEN_S", 60.0 if quit_at_once else 0.05)
    before = sys.getswitchinterval()
    app = NexusApp(sources(tmp_path))
    async with app.run_test(size=(110, 34)) as pilot:
        assert sys.getswitchinterval() == tui_app.START_SWITCH_INTERVAL_S < before
        if not quit_at_once:
            while not app.settings_ready:
                await pilot.pause(0.02)
            assert sys.getswitchinterval() == before
    assert sys.getswitchinterval() == before
