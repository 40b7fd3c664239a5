"""Small modal dialogs: confirm, ask for a line of text, show a secret once."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class Confirm(ModalScreen[bool]):
    """Yes or no; Esc is no."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss(False)", "Cancel", id="dialog-cancel")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button("Cancel", id="no")

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class AskText(ModalScreen[str | None]):
    """One line of text; Enter confirms, Esc cancels (None)."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss(None)", "Cancel", id="dialog-cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question, self.value, self.placeholder = question, value, placeholder

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog"):
            yield Label(self.question, classes="question")
            yield Input(self.value, placeholder=self.placeholder, id="answer")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(self.query_one("#answer", Input).value.strip() or None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ShowSecret(ModalScreen[None]):
    """A secret shown once, with a button that copies it."""

    BINDINGS: ClassVar = [Binding("escape", "dismiss", "Close", id="dialog-close")]

    def __init__(self, title: str, secret: str, note: str) -> None:
        super().__init__()
        self.title_text, self.secret, self.note = title, secret, note

    def compose(self) -> ComposeResult:
        with Grid(classes="dialog"):
            yield Label(self.title_text, classes="question")
            yield Static(self.secret, id="secret")
            yield Label(self.note, classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Copy", variant="primary", id="copy")
                yield Button("Done", id="done")

    @on(Button.Pressed, "#copy")
    def _copy(self) -> None:
        self.app.copy_to_clipboard(self.secret)
        self.notify("Copied to the clipboard")

    @on(Button.Pressed, "#done")
    def _done(self) -> None:
        self.dismiss(None)
