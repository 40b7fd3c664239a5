"""Help: every key binding and command, from the actions registry."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from nexus_app.tui.actions import ACTIONS, SCREENS


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar = [Binding("escape,f1", "dismiss", "Close", id="help-close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="dialog"):
            yield Label("Keys and commands (Ctrl+P opens the command palette; Esc closes)",
                        classes="question")
            yield DataTable(id="help-table", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "where", "action", "what it does")
        for action in ACTIONS:
            where = SCREENS[action.screen] if action.screen else "everywhere"
            table.add_row(action.key, where, action.title, action.help)
