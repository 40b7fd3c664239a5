"""The first-run screen: run the whole network on this machine, or connect to a gateway.

The first frame is the welcome text; the choices follow it at once (`FirstFrame`), and the
gateway URL is filled in once the settings are validated (`NexusApp.settings_ready`)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Static

from nexus_app.tui.key_bar import KeyBar
from nexus_app.tui.messages import FirstFrame

WELCOME = """\
[b]Welcome to NEXUS[/b]: a network where independent workers serve open models on their
own GPUs and earn $NEXUS, and you pay per prompt from a credit balance.

Start with a whole network on this machine (a gateway, a local Solana chain with a faucet,
and your own worker serving a small bundled model), or connect to an existing gateway or
any OpenAI-compatible server."""


class Choices(Vertical):
    """The local network button and the gateway form."""

    def compose(self) -> ComposeResult:
        with Horizontal(classes="choice"):
            yield Button("Local network on this machine", variant="primary", id="local")
        yield Label("or connect to a gateway:", classes="section")
        yield Input(placeholder="https://gateway.example", id="url")
        yield Input(placeholder="API key (optional on NEXUS: your wallet signs in)",
                    password=True, id="key")
        yield Button("Connect", id="connect")

    def on_mount(self) -> None:
        self.query_one("#local", Button).focus()
        self.watch(self.app, "settings_ready", self._fill_url)

    def _fill_url(self, ready: bool) -> None:
        """The configured gateway URL, once the settings are validated."""
        url = self.query_one("#url", Input)
        if ready and not url.value:
            url.value = self.app.settings.gateway_url  # type: ignore[attr-defined]


class WelcomeScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="welcome"):
            yield Static(WELCOME, id="welcome-text")
        yield KeyBar()

    def on_first_frame(self, _: FirstFrame) -> None:
        """The choices: buttons and inputs, each a widget type whose styles are parsed on
        first use, come right after the first frame."""
        self.query_one("#welcome").mount(Choices(id="choices"))

    @on(Button.Pressed, "#local")
    def _local(self) -> None:
        self._choose("wallet", network="local")
        self.notify("Starting the local network. Get test $NEXUS with the faucet (Ctrl+F), "
                    "then deposit some into credit.", title="Local network", timeout=10)

    @on(Input.Submitted, "#url, #key")
    @on(Button.Pressed, "#connect")
    def _remote(self) -> None:
        url = self.query_one("#url", Input).value.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            self.notify("Enter the gateway URL, starting with http:// or https://",
                        severity="error")
            return
        key = self.query_one("#key", Input).value.strip()
        self._choose("chat", network="remote", gateway_url=url, api_key=key or None)

    def _choose(self, mode: str, **values: object) -> None:
        """Save the choice, connect, and go on to `mode` (the welcome mode is left behind)."""
        app = self.app
        if not app.validate_settings():  # type: ignore[attr-defined]
            return
        app.link.remember(**values)  # type: ignore[attr-defined]
        app.switch_mode(mode)
        app.reconnect()  # type: ignore[attr-defined]
