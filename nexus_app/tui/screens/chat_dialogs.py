"""The chat's dialogs: a conversation's settings (model, system prompt, sampling, reply
length) and the search across every stored conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ListItem, ListView, Select, TextArea

from nexus_app.tui.conversations import ChatSettings, SearchHit

MAX_REPLY_TOKENS = 8192


def _number(text: str, name: str, low: float, high: float) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}")
    return value


def parse_settings(system_prompt: str, temperature: str, top_p: str,
                   max_tokens: str) -> ChatSettings:
    """The settings as typed in the dialog (empty: the server's default); ValueError says
    what is wrong."""
    tokens = _number(max_tokens, "Max tokens", 1, MAX_REPLY_TOKENS)
    if tokens is not None and tokens != int(tokens):
        raise ValueError("Max tokens must be a whole number")
    return ChatSettings(system_prompt.strip() or None,
                        _number(temperature, "Temperature", 0, 2),
                        _number(top_p, "Top p", 0, 1),
                        None if tokens is None else int(tokens))


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


class ChatSettingsDialog(ModalScreen[tuple[ChatSettings, str | None] | None]):
    """A conversation's settings; answers (settings, model) or None when cancelled."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss(None)", "Cancel", id="dialog-cancel")]

    def __init__(self, settings: ChatSettings, model: str | None, models: list[str]) -> None:
        super().__init__()
        self.settings, self.model, self.models = settings, model, models

    def compose(self) -> ComposeResult:
        s = self.settings
        with Grid(classes="dialog", id="chat-settings"):
            yield Label("Chat settings of this conversation", classes="question")
            select = Select[str]([(m, m) for m in self.models], prompt="the server's models",
                                 id="settings-model")
            if self.model in self.models:
                select.value = self.model
            yield select
            yield Label("System prompt", classes="hint")
            yield TextArea(s.system_prompt or "", id="system-prompt")
            with Horizontal(classes="fields"):
                yield Input(_text(s.temperature), placeholder="temperature, 0 to 2",
                            id="temperature")
                yield Input(_text(s.top_p), placeholder="top p, 0 to 1", id="top-p")
                yield Input("" if s.max_tokens is None else str(s.max_tokens),
                            placeholder="max tokens", id="max-tokens")
            yield Label("Empty fields leave the server's default.", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def _save(self) -> None:
        try:
            settings = parse_settings(self.query_one("#system-prompt", TextArea).text,
                                      *(self.query_one(f"#{name}", Input).value
                                        for name in ("temperature", "top-p", "max-tokens")))
        except ValueError as exc:
            self.notify(str(exc), title="Chat settings", severity="error")
            return
        model = self.query_one("#settings-model", Select).value
        self.dismiss((settings, model if isinstance(model, str) else None))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class HitItem(ListItem):
    def __init__(self, hit: SearchHit) -> None:
        who = "you" if hit.role == "user" else hit.role
        super().__init__(Label(f"{hit.title} · {who}: {hit.snippet}", markup=False))
        self.hit = hit


class SearchDialog(ModalScreen[int | None]):
    """Search every conversation as you type; Enter on a match opens its conversation."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss(None)", "Cancel", id="dialog-cancel")]

    def __init__(self, search: Callable[[str], list[SearchHit]]) -> None:
        super().__init__()
        self.search = search

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog", id="search"):
            yield Label("Search the conversations", classes="question")
            yield Input(placeholder="words to find (prefixes match)", id="search-text")
            yield ListView(id="search-hits")
            yield Label("", id="search-count", classes="hint")

    @on(Input.Changed, "#search-text")
    def _changed(self, event: Input.Changed) -> None:
        hits = self.search(event.value)
        view = self.query_one("#search-hits", ListView)
        view.clear()
        view.extend(HitItem(hit) for hit in hits)
        count = f"{len(hits)} message{'s' * (len(hits) != 1)} found" if event.value else ""
        self.query_one("#search-count", Label).update(count)

    @on(Input.Submitted, "#search-text")
    def _first(self) -> None:
        view = self.query_one("#search-hits", ListView)
        if view.children:
            view.index = 0
            view.focus()

    @on(ListView.Selected, "#search-hits")
    def _open(self, event: ListView.Selected) -> None:
        if isinstance(event.item, HitItem):
            self.dismiss(event.item.hit.conversation_id)
