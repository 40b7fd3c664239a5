"""The chat's controls on a whole local network with the real SmolLM2 worker, under Textual's
Pilot: a conversation's system prompt reaches the prompt the worker renders, temperature 0
gives the same reply twice (regenerated, the new reply replaces the old one and is billed),
search finds a past message and export writes the conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, TextArea

from nexus_app.tui.app import NexusApp
from nexus_app.tui.conversations import ChatTurn, ConversationStore
from nexus_app.tui.screens.chat import MessageView
from nexus_app.tui.screens.chat_dialogs import ChatSettingsDialog, SearchDialog
from nexus_app.tui.screens.dialogs import AskText
from nexus_app.worker.prompts import ChatPrompt, ChatTemplate
from tests.support.fake_nvml import FakeNvml
from tests.support.tui import SIZE, local_network_serving, tui_settings, wait_until

pytestmark = pytest.mark.slow

SYSTEM = "You are a ship's cook. Answer in one short sentence."


def replies(settings: Any) -> list[ChatTurn]:
    store = ConversationStore(settings.data_dir / "conversations.sqlite3")
    try:
        return [m for c in store.recent() for m in store.messages(c.id) if m.role == "assistant"]
    finally:
        store.close()


def reply_billed(app: NexusApp) -> bool:
    """The reply is shown with its cost and its worker has ended."""
    views = app.screen.query(MessageView)
    return (len(views) == 2 and "NEXUS" in str(views.last().query_one(".note").render())
            and not any(w.group == "reply" and w.is_running for w in app.screen.workers))


async def test_chat_settings_regenerate_search_and_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[str] = []  # what the worker's chat template made of each request
    render = ChatTemplate.prompt

    def spy(self: ChatTemplate, request: dict[str, Any]) -> ChatPrompt:
        prompt = render(self, request)
        rendered.append(prompt.text)
        return prompt

    monkeypatch.setattr(ChatTemplate, "prompt", spy)
    settings = tui_settings(tmp_path)
    app = NexusApp(settings, nvml=FakeNvml([]))
    async with app.run_test(size=SIZE) as pilot:
        await local_network_serving(pilot)
        await pilot.press("f2")
        await wait_until(pilot, lambda: app.screen.query_one("#model").value
                         == "smollm2-135m-instruct-q4_1", what="the model list")

        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatSettingsDialog))
        app.screen.query_one("#system-prompt", TextArea).text = SYSTEM
        app.screen.query_one("#temperature", Input).value = "0"
        app.screen.query_one("#max-tokens", Input).value = "24"
        app.screen.query_one("#max-tokens", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsDialog))

        app.screen.query_one("#prompt", Input).value = "Name three colours."
        await pilot.press("enter")
        await wait_until(pilot, lambda: reply_billed(app), 90, "the reply")
        assert SYSTEM in rendered[-1] and "Name three colours." in rendered[-1]
        [first] = replies(settings)
        assert first.content.strip() and first.cost and first.cost > 0
        chat = app.link.chat
        assert chat is not None
        spent = (await chat.balance()).total_spent

        await pilot.press("ctrl+g")  # regenerate: the same reply at temperature 0, billed again
        await wait_until(pilot, lambda: len(rendered) == 2 and reply_billed(app), 90,
                         "the regenerated reply")
        [second] = replies(settings)
        assert second.content == first.content and rendered[1] == rendered[0]
        assert second.cost and (await chat.balance()).total_spent == spent + second.cost

        await pilot.press("ctrl+n")  # an empty conversation, then find the first one again
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchDialog))
        await pilot.press(*"colour")
        await wait_until(pilot, lambda: len(app.screen.query_one("#search-hits").children)
                         == 1, what="the match")
        await pilot.press("enter", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SearchDialog))
        await wait_until(pilot, lambda: len(app.screen.query(MessageView)) == 2)
        assert app.screen.query(MessageView).last().message.content == second.content

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, AskText))
        target = tmp_path / "colours.md"
        app.screen.query_one("#answer", Input).value = str(target)
        await pilot.press("enter")
        await wait_until(pilot, lambda: target.exists(), what="the export")
        text = target.read_text()
        assert f"## System\n\n{SYSTEM}" in text and "## You\n\nName three colours." in text
        assert second.content.strip() in text and "- Temperature: 0.0" in text
        await pilot.press("ctrl+q")
    assert not app.is_running
