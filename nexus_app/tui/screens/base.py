"""What every screen shares: header and footer, following the app's connection, and a clear
notice where a screen needs NEXUS endpoints the server does not have."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Static

from nexus_app.client.http import ClientError
from nexus_app.tui.key_bar import KeyBar
from nexus_app.tui.link import Connection

if TYPE_CHECKING:
    from nexus_app.tui.app import NexusApp


def unavailable_reason(connection: Connection) -> str | None:
    """Why a NEXUS-only screen cannot work now, or None when it can."""
    if connection.state == "setup":
        return "Choose a network first (the welcome screen, or Settings)."
    if connection.state == "connecting":
        return "Connecting…"
    if connection.state == "unreachable":
        return f"The gateway is unreachable: {connection.message}"
    if not connection.nexus:
        return (f"Unavailable: {connection.url} is an OpenAI-compatible server without NEXUS "
                "endpoints. Chat works; wallet, keys, worker and network need a NEXUS gateway.")
    return None


class NexusScreen(Screen[None]):
    """A screen of the app. NEXUS-only screens set `needs_nexus` and put their content in
    `compose_body`; while the server cannot serve them a notice shows instead."""

    needs_nexus: ClassVar[bool] = True

    @property
    def nexus(self) -> NexusApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        if self.needs_nexus:
            yield Static("", id="unavailable", classes="notice")
        with Vertical(id="body"):
            yield from self.compose_body()
        yield KeyBar()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._connection_changed)

    def _connection_changed(self, connection: Connection) -> None:
        if self.needs_nexus:
            reason = unavailable_reason(connection)
            notice = self.query_one("#unavailable", Static)
            notice.update(reason or "")
            notice.display = reason is not None
            self.query_one("#body").display = reason is None
            if reason is not None:
                return
        if connection.state == "online":
            self.on_online()

    def on_screen_resume(self) -> None:
        """Shown again: refresh what it shows."""
        connection: Connection = self.nexus.connection
        if connection.state == "online" and (connection.nexus or not self.needs_nexus):
            self.on_online()

    def on_online(self) -> None:
        """The app is connected (to a NEXUS gateway, for NEXUS-only screens): load data."""

    def action_refresh(self) -> None:
        """Reload what the screen shows."""
        self.on_screen_resume()

    def report(self, exc: BaseException, title: str) -> None:
        """Show a failure the user can act on; never a traceback."""
        message = exc.message if isinstance(exc, ClientError) else f"{type(exc).__name__}: {exc}"
        self.notify(message, title=title, severity="error", timeout=8)
