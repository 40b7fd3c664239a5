"""The bottom line of every screen: the keys the focused screen answers to, clickable.

What Textual's `Footer` shows, drawn as one widget: the Footer builds a widget per key after
the first frame and builds them again at every change of focus, which costs a screen's first
frame and every focus change tens of milliseconds on a small machine."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

Columns = tuple[int, int, str]  # a key on the bar: its first column, its end column, the key


class KeyBar(Static):
    """One line: each shown binding's key and description, the command palette's at the
    right end; a binding the screen disables now is dimmed. Clicking one presses its key."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-bar--key", "key-bar--description",
                                              "key-bar--disabled"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        background: $footer-background;
        color: $footer-foreground;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        & > .key-bar--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .key-bar--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .key-bar--disabled {
            text-style: dim;
        }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[Columns] = []  # where each shown key is

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._show()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self._show()

    def shown(self) -> list[tuple[Binding, bool]]:
        """The bindings on the bar, in order, with whether each is enabled now: one per
        action (its first key), those marked to show, then the command palette's."""
        keys, palette = self._keys_and_palette()
        return keys + palette

    def _keys_and_palette(self) -> tuple[list[tuple[Binding, bool]], list[tuple[Binding, bool]]]:
        """The shown bindings, one per action, and the command palette's (none or one)."""
        active = self.screen.active_bindings
        by_action: dict[str, tuple[Binding, bool]] = {}
        for _node, binding, enabled, _tooltip in active.values():
            if binding.show and binding.action not in by_action:
                by_action[binding.action] = (binding, enabled)
        palette = active.get(self.app.COMMAND_PALETTE_BINDING)
        if not self.app.ENABLE_COMMAND_PALETTE or palette is None:
            return list(by_action.values()), []
        return list(by_action.values()), [(palette[1], palette[2])]

    def _show(self) -> None:
        """Draw the keys, the command palette's at the right end; keys that do not fit
        before it end in an ellipsis."""
        shown, palette = self._keys_and_palette()
        line, keys = self._line(shown)
        right, right_keys = self._line(palette)
        room = max(0, self.size.width - right.cell_len) if self.size.width else line.cell_len
        if line.cell_len > room:
            line.truncate(room, overflow="ellipsis")
            keys = [(start, end, key) for start, end, key in keys if end <= room]
        line.pad_right(room - line.cell_len)
        keys += [(start + room, end + room, key) for start, end, key in right_keys]
        self._keys = keys
        self.update(line + right)

    def _line(self, bindings: list[tuple[Binding, bool]]) -> tuple[Text, list[Columns]]:
        """`bindings` drawn, and the columns each one's key takes."""
        key_style = self.get_component_rich_style("key-bar--key")
        text_style = self.get_component_rich_style("key-bar--description")
        dim = self.get_component_rich_style("key-bar--disabled")
        line, keys = Text(), []
        for binding, enabled in bindings:
            start = line.cell_len
            line.append(f" {self.app.get_key_display(binding)} ",
                        key_style if enabled else key_style + dim)
            line.append(f"{binding.description} ", text_style if enabled else text_style + dim)
            keys.append((start, line.cell_len, binding.key))
        return line, keys

    def on_resize(self) -> None:
        self._show()

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._keys:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
