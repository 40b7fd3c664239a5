"""Chat: local conversations, a model picker filled from the server, streamed Markdown
replies (Esc cancels and keeps what arrived), the cost of each reply and the balance; each
conversation's settings (model, system prompt, temperature, top p, reply length), regenerating
the last reply, editing and resending the last message, export to Markdown and search."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, ListView, Select, Static

from nexus_app.client.chat_types import CHARS_PER_TOKEN, ModelInfo, Reply, fit_history
from nexus_app.client.http import ClientError
from nexus_app.tui.actions import bindings
from nexus_app.tui.conversations import ChatSettings, ChatTurn, Conversation, ConversationStore
from nexus_app.tui.link import Connection
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.tui.screens.chat_views import ConversationItem, MessageView, price_label, reply_note
from nexus_app.tui.screens.dialogs import AskText, Confirm

__all__ = ["ChatScreen", "MessageView"]

REPLY_MAX_TOKENS = 1024  # bounds each reply (and the credit a NEXUS gateway reserves for it)


class ChatScreen(NexusScreen):
    needs_nexus = False
    BINDINGS = bindings("chat")

    def __init__(self) -> None:
        super().__init__()
        self.store: ConversationStore
        self.conversation: Conversation | None = None
        self.models: dict[str, ModelInfo] = {}
        self.last_reply = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Button("+ New chat", id="new-chat")
                yield ListView(id="conversations")
            with Vertical(id="chat-main"):
                with Horizontal(id="chat-bar"):
                    yield Select[str]([], prompt="no models yet", id="model", allow_blank=True)
                    yield Static("", id="balance")
                yield VerticalScroll(id="messages")
                yield Input(placeholder="Message (Enter sends, Esc stops a reply)", id="prompt")

    def on_mount(self) -> None:
        self.store = ConversationStore(self.nexus.link.data_dir / "conversations.sqlite3")
        super().on_mount()
        self.query_one("#messages", VerticalScroll).anchor()
        conversations = self.store.recent()
        self._fill_list(conversations)
        if conversations:
            self.open(conversations[0])
        self.query_one("#prompt", Input).focus()

    def on_unmount(self) -> None:
        self.store.close()

    def on_online(self) -> None:
        self.refresh_models_list()
        self.refresh_balance()

    # --- conversations --------------------------------------------------------------------

    def _fill_list(self, conversations: list[Conversation]) -> None:
        view = self.query_one("#conversations", ListView)
        view.clear()
        view.extend(ConversationItem(c) for c in conversations)
        if self.conversation is not None:
            ids = [c.id for c in conversations]
            if self.conversation.id in ids:
                self.call_after_refresh(setattr, view, "index", ids.index(self.conversation.id))

    def open(self, conversation: Conversation) -> None:
        self.conversation = conversation
        messages = self.query_one("#messages", VerticalScroll)
        messages.remove_children()
        decimals = self._decimals(conversation.model)
        messages.mount_all([MessageView(m, reply_note(m, decimals))
                            for m in self.store.messages(conversation.id)])
        messages.anchor()
        if conversation.model and conversation.model in self.models:
            self.query_one("#model", Select).value = conversation.model

    @on(ListView.Selected, "#conversations")
    def _selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            found = self.store.get(event.item.conversation.id)
            if found is not None:
                self.open(found)

    @on(Button.Pressed, "#new-chat")
    def action_new_conversation(self) -> None:
        self.open(self.store.create())
        self._fill_list(self.store.recent())
        self.query_one("#prompt", Input).focus()

    def action_rename_conversation(self) -> None:
        conversation = self.conversation
        if conversation is None:
            return

        def rename(title: str | None) -> None:
            if title:
                self.store.rename(conversation.id, title)
                self.conversation = self.store.get(conversation.id)
                self._fill_list(self.store.recent())

        self.app.push_screen(AskText("Rename the conversation", conversation.title), rename)

    def action_delete_conversation(self) -> None:
        conversation = self.conversation
        if conversation is None:
            return

        def delete(yes: bool | None) -> None:
            if yes:
                self.store.delete(conversation.id)
                self.conversation = None
                self.query_one("#messages", VerticalScroll).remove_children()
                remaining = self.store.recent()
                self._fill_list(remaining)
                if remaining:
                    self.open(remaining[0])

        self.app.push_screen(Confirm(f"Delete “{conversation.title}”?", "Delete"), delete)

    def action_copy_reply(self) -> None:
        if self.last_reply:
            self.app.copy_to_clipboard(self.last_reply)
            self.notify("Reply copied to the clipboard")

    # --- regenerate, edit, settings, export, search ---------------------------------------

    def _last(self, role: str) -> ChatTurn | None:
        if self.conversation is None:
            return None
        found = [m for m in self.store.messages(self.conversation.id) if m.role == role]
        return found[-1] if found else None

    def action_regenerate(self) -> None:
        """Replace the last reply with a new one (a new request, billed as such)."""
        last = self._last("assistant")
        model = self._ready_model() if last is not None else None
        if last is None or last.id is None or model is None or self.conversation is None:
            if last is None:
                self.notify("No reply to regenerate yet", severity="warning")
            return
        self.store.truncate(self.conversation.id, last.id)
        self.open(self.conversation)
        self._ask(self.conversation.id, model)

    def action_edit_message(self) -> None:
        """Edit the last message sent and send it again (its reply and what follows go)."""
        last = self._last("user")
        conversation = self.conversation
        if last is None or last.id is None or conversation is None:
            self.notify("No message to edit yet", severity="warning")
            return
        message_id = last.id

        def resend(text: str | None) -> None:
            model = self._ready_model() if text else None
            if text is None or model is None:
                return
            self.store.truncate(conversation.id, message_id)
            self.store.add(conversation.id, ChatTurn("user", text), model)
            self.open(conversation)
            self._ask(conversation.id, model)

        self.app.push_screen(AskText("Edit the message and send it again", last.content),
                             resend)

    def action_chat_settings(self) -> None:
        conversation = self.conversation or self.store.create()
        if self.conversation is None:
            self.conversation = conversation
            self._fill_list(self.store.recent())
        model = self.query_one("#model", Select).value

        def save(answer: tuple[ChatSettings, str | None] | None) -> None:
            if answer is None:
                return
            settings, chosen = answer
            self.store.set_settings(conversation.id, settings, chosen)
            self.conversation = self.store.get(conversation.id)
            if chosen in self.models:
                self.query_one("#model", Select).value = chosen
            self.notify("Saved for this conversation", title="Chat settings")

        from nexus_app.tui.screens.chat_dialogs import ChatSettingsDialog  # its first use

        current = self.store.get(conversation.id) or conversation
        self.app.push_screen(ChatSettingsDialog(
            current.settings, model if isinstance(model, str) else current.model,
            sorted(self.models)), save)

    def action_export(self) -> None:
        conversation = self.conversation
        if conversation is None:
            self.notify("No conversation to export", severity="warning")
            return
        slug = re.sub(r"[^a-z0-9]+", "-", conversation.title.lower()).strip("-") or "chat"
        default = self.nexus.settings.data_dir / "exports" / f"{slug}-{conversation.id}.md"

        def export(path: str | None) -> None:
            if not path:
                return
            target = Path(path).expanduser()
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(self.store.markdown(conversation.id), encoding="utf-8")
            except OSError as exc:
                self.report(exc, "Export")
                return
            self.notify(f"Exported to {target}", title="Export")

        self.app.push_screen(AskText("Export the conversation to a Markdown file",
                                     str(default)), export)

    def action_search(self) -> None:
        from nexus_app.tui.screens.chat_dialogs import SearchDialog  # its first use

        def found(conversation_id: int | None) -> None:
            conversation = self.store.get(conversation_id) if conversation_id else None
            if conversation is not None:
                self.open(conversation)
                self._fill_list(self.store.recent())

        self.app.push_screen(SearchDialog(self.store.search), found)

    # --- models and balance ---------------------------------------------------------------

    def action_refresh_models(self) -> None:
        self.refresh_models_list()

    @work(exclusive=True, group="models")
    async def refresh_models_list(self) -> None:
        chat = self.nexus.link.chat
        if chat is None:
            return
        try:
            models = await chat.models()
        except ClientError as exc:
            self.report(exc, "Models")
            return
        self.models = {m.id: m for m in models}
        select = self.query_one("#model", Select)
        current = select.value
        select.set_options([(price_label(m), m.id) for m in models])
        select.prompt = "choose a model" if models else "no model online"
        wanted = self.conversation.model if self.conversation else None
        for choice in (current, wanted, models[0].id if models else None):
            if isinstance(choice, str) and choice in self.models:
                select.value = choice
                break

    @work(exclusive=True, group="balance")
    async def refresh_balance(self) -> None:
        label = next(iter(self.query("#balance").results(Static)), None)
        if label is None:  # the app is closing while a reply ends
            return
        if not self.nexus.connection.nexus:
            label.update("")
            return
        try:
            chat = self.nexus.link.chat
            if chat is None:
                return
            balance = await chat.balance()
        except ClientError:
            label.update("credit: unavailable")
            return
        label.update(f"credit: {balance.balance_display} NEXUS")

    def _decimals(self, model: str | None) -> int | None:
        info = self.models.get(model or "")
        return info.price.decimals if info and info.price else None

    # --- sending and streaming ------------------------------------------------------------

    @on(Input.Submitted, "#prompt")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        model = self._ready_model()
        if not text or model is None:
            return
        event.input.value = ""
        if self.conversation is None:
            self.conversation = self.store.create(text[:40], model)
        elif not self.store.messages(self.conversation.id):
            self.store.rename(self.conversation.id, text[:40])
        message = ChatTurn("user", text)
        self.store.add(self.conversation.id, message, model)
        self._fill_list(self.store.recent())
        self.query_one("#messages", VerticalScroll).mount(MessageView(message))
        self._ask(self.conversation.id, model)

    def _ready_model(self) -> str | None:
        """The model to ask, when a reply can be asked for now (else say why, and None)."""
        model = self.query_one("#model", Select).value
        if not isinstance(model, str):
            self.notify("Choose a model first (no model is online yet?)", severity="warning")
            return None
        if self.nexus.link.chat is None or self.nexus.connection.state != "online":
            self.notify("Not connected to a server", severity="warning")
            return None
        if any(w.group == "reply" and w.is_running for w in self.workers):
            self.notify("A reply is still being written (Esc stops it)", severity="warning")
            return None
        return model

    def _ask(self, conversation_id: int, model: str) -> None:
        """Ask for a reply to the stored conversation, with its settings, into a new view."""
        conversation = self.store.get(conversation_id)
        settings = conversation.settings if conversation else ChatSettings()
        history = [{"role": m.role, "content": m.content}
                   for m in self.store.messages(conversation_id) if m.content]
        info = self.models.get(model)
        reply_tokens = settings.max_tokens or REPLY_MAX_TOKENS
        context = info.context_length if info else None
        system = settings.system_prompt
        if context is not None and system:
            context -= len(system) // CHARS_PER_TOKEN
        sent = fit_history(history, context, reply_tokens)
        left_out = len(history) - len(sent)
        if system:
            sent = [{"role": "system", "content": system}, *sent]
        messages = self.query_one("#messages", VerticalScroll)
        view = MessageView(ChatTurn("assistant", ""), "writing…")
        messages.mount(view)
        messages.anchor()
        self.reply(conversation_id, model, sent, view, left_out,
                   settings)

    def action_cancel_reply(self) -> None:
        for worker in self.workers:
            if worker.group == "reply" and worker.is_running:
                worker.cancel()

    @work(exclusive=True, group="reply")
    async def reply(self, conversation_id: int, model: str, history: list[dict[str, str]],
                    view: MessageView, left_out: int, settings: ChatSettings) -> None:
        """Stream the reply to `history` (`left_out`: the earlier messages not sent, to fit
        the model's context) into `view`, sampled as `settings` say."""
        chat = self.nexus.link.chat
        assert chat is not None
        from textual.widgets import Markdown  # loaded with the first message (markdown-it)

        stream = Markdown.get_stream(view.markdown)
        parts: list[str] = []
        end: Reply | None = None
        failure: str | None = None
        try:
            async for item in chat.stream(model, history,
                                          settings.max_tokens or REPLY_MAX_TOKENS,
                                          temperature=settings.temperature,
                                          top_p=settings.top_p):
                if isinstance(item, Reply):
                    end = item
                else:
                    parts.append(item)
                    await stream.write(item)
        except ClientError as exc:
            failure = exc.message
        finally:
            await asyncio.shield(stream.stop())
            self._finish(conversation_id, model, view, "".join(parts), end, failure, left_out)

    def _finish(self, conversation_id: int, model: str, view: MessageView, text: str,
                end: Reply | None, failure: str | None, left_out: int) -> None:
        """Save the reply (all of it, or what arrived before a cancel) and show its note."""
        cancelled = end is None and failure is None
        message = ChatTurn("assistant", text, end.cost if end else None,
                          end.completion_tokens if end else None, cancelled)
        if text or end is not None:
            self.store.add(conversation_id, message)
            self.last_reply = text
        if not view.is_attached:  # the app is closing: the reply is saved, that is all
            return
        note = reply_note(message, self._decimals(model))
        if end is not None and end.finish_reason == "length":
            note = f"{note} · cut at the length limit" if note else "cut at the length limit"
        if left_out:
            earlier = f"{left_out} earlier message{'s' * (left_out > 1)} not sent (context)"
            note = f"{note} · {earlier}" if note else earlier
        if failure:
            note = f"failed: {failure}"
            self.notify(failure, title="Chat", severity="error", timeout=8)
        view.set_note(note or "done")
        self.refresh_balance()

    def _connection_changed(self, connection: Connection) -> None:
        super()._connection_changed(connection)
        if connection.state != "online":
            self.query_one("#balance", Static).update("")
