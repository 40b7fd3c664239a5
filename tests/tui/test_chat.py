"""The chat screen against a real gateway with a scripted worker: Esc stops a reply and keeps
what arrived (billed only for that), conversations are renamed and deleted, help lists
every action; a conversation's settings reach the request, edit and resend, search, export."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, ListView, TextArea

from nexus_app.tui.actions import ACTIONS
from nexus_app.tui.app import NexusApp
from nexus_app.tui.conversations import ConversationStore
from nexus_app.tui.screens.chat import MessageView
from nexus_app.tui.screens.chat_dialogs import ChatSettingsDialog, SearchDialog
from nexus_app.tui.screens.dialogs import AskText, Confirm
from nexus_app.tui.screens.help import HelpScreen
from tests.support.tui import SIZE, text_of, tui_settings, wait_until

LONG_REPLY = " ".join(f"word{i}" for i in range(200))


async def test_escape_keeps_what_arrived_and_pays_only_for_it(gw, tmp_path: Path) -> None:
    account = await gw.account(credit=50_000)
    worker = await gw.worker(reply=LONG_REPLY, token_delay_s=0.02)
    settings = tui_settings(tmp_path, network="remote", gateway_url=gw.url,
                            api_key=account.api_key)
    app = NexusApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await scripted_model_chosen(pilot, app)
        await wait_until(pilot, lambda: "credit: 0.05" in text_of(pilot, "#balance"))
        app.screen.query_one("#prompt", Input).value = "Count."
        await pilot.press("enter")
        views = app.screen.query(MessageView)
        await wait_until(pilot, lambda: len(views) == 2 and
                         "word20 " in views.last().markdown.source, what="streaming")
        await pilot.press("escape")
        await wait_until(pilot, lambda: "cancelled" in str(
            views.last().query_one(".note").render()), what="the cancel")
        shown = views.last().markdown.source
        assert "word20" in shown and "word199" not in shown
        await wait_until(pilot, lambda: worker.cancelled, what="the job's cancel")

        store = ConversationStore(settings.data_dir / "conversations.sqlite3")
        [conversation] = store.recent()
        kept = store.messages(conversation.id)[-1]
        assert kept.cancelled and kept.content == shown
        store.close()
        # billed for the tokens delivered only, nothing left reserved
        balance = await gw.store.balance(account.wallet)
        assert 0 < balance.total_spent < 50_000 and balance.reserved == 0
        assert (await gw.store.audit()).ok

        # rename, then a new conversation, then delete it
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: isinstance(app.screen, AskText))
        app.screen.query_one("#answer", Input).value = "Counting"
        await pilot.press("enter")
        await wait_until(pilot, lambda: store_titles(settings) == ["Counting"])
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: len(store_titles(settings)) == 2)
        assert len(app.screen.query(MessageView)) == 0
        await pilot.press("ctrl+d")
        await wait_until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.click("#yes")
        await wait_until(pilot, lambda: store_titles(settings) == ["Counting"])
        await wait_until(pilot, lambda: len(app.screen.query_one(
            "#conversations", ListView).children) == 1)
        assert len(app.screen.query(MessageView)) == 2  # the remaining one is open again

        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.query_one(DataTable).row_count == len(ACTIONS)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def scripted_model_chosen(pilot, app: NexusApp) -> None:  # type: ignore[no-untyped-def]
    """Until the app is online with the scripted worker's model picked in the chat."""
    await wait_until(pilot, lambda: app.connection.state == "online" and
                     app.screen.query_one("#model").value == "scripted-model")


def store_titles(settings) -> list[str]:  # type: ignore[no-untyped-def]
    store = ConversationStore(settings.data_dir / "conversations.sqlite3")
    try:
        return [c.title for c in store.recent()]
    finally:
        store.close()


async def test_a_long_conversation_is_trimmed_to_the_models_context(gw, tmp_path: Path) -> None:
    account = await gw.account(credit=50_000)
    reply = " ".join(["blah"] * 300)  # 1,500 characters a reply
    worker = await gw.worker(reply=reply, context_length=2048)
    settings = tui_settings(tmp_path, network="remote", gateway_url=gw.url,
                            api_key=account.api_key)
    app = NexusApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await scripted_model_chosen(pilot, app)
        for turn in range(4):
            app.screen.query_one("#prompt", Input).value = f"Turn {turn}."
            await pilot.press("enter")
            await wait_until(pilot, lambda turn=turn: len(worker.jobs) == turn + 1 and " tokens" in
                             str(app.screen.query(MessageView).last().query_one(".note").render()),
                             what=f"reply {turn}")
        sent = [len(job.request["messages"]) for job in worker.jobs]
        # 2048 tokens less 1024 for the reply leave room for one earlier reply (~508 tokens
        # estimated) and the prompts around it, not two
        assert sent == [1, 3, 3, 3]
        note = str(app.screen.query(MessageView).last().query_one(".note").render())
        assert "earlier messages not sent (context)" in note


async def test_settings_edit_search_and_export(gw, tmp_path: Path) -> None:
    """Each control of the chat against a gateway with a scripted worker: the conversation's
    settings go into the request, an edited message is resent in place of the old one,
    search opens the conversation of a past message, export writes it as Markdown."""
    account = await gw.account(credit=50_000)
    worker = await gw.worker(reply="Red, green and blue.")
    settings = tui_settings(tmp_path, network="remote", gateway_url=gw.url,
                            api_key=account.api_key)
    app = NexusApp(settings)
    async with app.run_test(size=SIZE) as pilot:
        await scripted_model_chosen(pilot, app)
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatSettingsDialog))
        app.screen.query_one("#system-prompt", TextArea).text = "Answer in one line."
        for field, value in (("temperature", "3"), ("top-p", "0.5"), ("max-tokens", "40")):
            app.screen.query_one(f"#{field}", Input).value = value
        app.screen.query_one("#temperature", Input).focus()
        await pilot.press("enter")  # refused: temperature is at most 2
        assert isinstance(app.screen, ChatSettingsDialog)
        app.screen.query_one("#temperature", Input).value = "0"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsDialog))

        await send(pilot, app, "Name three colours.", worker, 1)
        request = worker.jobs[0].request
        assert request["messages"][0] == {"role": "system", "content": "Answer in one line."}
        assert (request["temperature"], request["top_p"], request["max_tokens"]) == (0, 0.5, 40)

        await pilot.press("ctrl+t")  # edit the last message and send it again
        await wait_until(pilot, lambda: isinstance(app.screen, AskText))
        app.screen.query_one("#answer", Input).value = "Name three fruits."
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(worker.jobs) == 2 and reply_done(app), what="resend")
        assert [m["content"] for m in worker.jobs[1].request["messages"]] == [
            "Answer in one line.", "Name three fruits."]
        store = ConversationStore(settings.data_dir / "conversations.sqlite3")
        [conversation] = store.recent()
        assert [m.content for m in store.messages(conversation.id)] == [
            "Name three fruits.", "Red, green and blue."]
        store.close()

        await pilot.press("ctrl+n")  # another conversation, then find the first one again
        await send(pilot, app, "Something else.", worker, 3)
        await pilot.press("ctrl+f")
        await wait_until(pilot, lambda: isinstance(app.screen, SearchDialog))
        await pilot.press(*"fruit")
        hits = app.screen.query_one("#search-hits", ListView)
        await wait_until(pilot, lambda: len(hits.children) == 1, what="the match")
        await pilot.press("enter", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SearchDialog))
        assert app.screen.conversation.id == conversation.id  # type: ignore[attr-defined]

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, AskText))
        target = tmp_path / "out" / "fruits.md"
        app.screen.query_one("#answer", Input).value = str(target)
        await pilot.press("enter")
        await wait_until(pilot, lambda: target.exists(), what="the export")
        text = target.read_text()
        assert text.startswith("# Name three colours.\n") and "- Temperature: 0.0" in text
        assert "## System\n\nAnswer in one line." in text
        assert "## You\n\nName three fruits.\n\n## Assistant\n\nRed, green and blue.\n" in text


def reply_done(app: NexusApp) -> bool:
    views = app.screen.query(MessageView)
    return bool(views) and " tokens" in str(views.last().query_one(".note").render())


async def send(pilot, app: NexusApp, text: str, worker, jobs: int) -> None:  # type: ignore[no-untyped-def]
    app.screen.query_one("#prompt", Input).value = text
    await pilot.press("enter")
    await wait_until(pilot, lambda: len(worker.jobs) == jobs and reply_done(app),
                     what=f"the reply to {text!r}")
