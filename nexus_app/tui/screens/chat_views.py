"""What the chat screen shows: a message with its note, a conversation in the list, and the
model picker's labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, ListItem

from nexus_app.client.chat_types import ModelInfo
from nexus_app.tui.conversations import ChatTurn, Conversation
from nexus_app.units import format_units

if TYPE_CHECKING:
    from textual.widgets import Markdown


def price_label(model: ModelInfo) -> str:
    if model.price is None:
        return model.id
    price = model.price
    out = format_units(price.output_per_million, price.decimals)
    return f"{model.id} · {out} NEXUS/1M out"


def reply_note(message: ChatTurn, decimals: int | None) -> str:
    """'42 tokens · 0.000123 NEXUS' under a reply, with what is known of it."""
    parts = []
    if message.completion_tokens is not None:
        parts.append(f"{message.completion_tokens} tokens")
    if message.cost is not None and decimals is not None:
        parts.append(f"{format_units(message.cost, decimals)} NEXUS")
    if message.cancelled:
        parts.append("cancelled")
    return " · ".join(parts)


class MessageView(Vertical):
    """One message: its Markdown and, for replies, a note (tokens, cost)."""

    def __init__(self, message: ChatTurn, note: str = "") -> None:
        super().__init__(classes=f"message {message.role}")
        self.message = message
        self.note = note

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # markdown-it and pygments: not before a message

        yield Markdown(self.message.content)
        yield Label(self.note, classes="note")

    @property
    def markdown(self) -> Markdown:
        from textual.widgets import Markdown

        return self.query_one(Markdown)

    def set_note(self, note: str) -> None:
        """Show `note`; nothing when the view's children are gone (the app is closing while
        a reply ends)."""
        for label in self.query(".note").results(Label):
            label.update(note)


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title))
        self.conversation = conversation
