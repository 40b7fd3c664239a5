"""The first-run screen: run the whole network on this machine, or connect to a gateway."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

WELCOME = """\
[b]Welcome to NEXUS[/b]: a network where independent workers serve open models on their
own GPUs and earn $NEXUS, and you pay per prompt from a credit balance.

Start with a whole network on this machine (a gateway, a local Solana chain with a faucet,
and your own worker serving a small bundled model), or connect to an existing gateway or
any OpenAI-compatible server."""


class WelcomeScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="welcome"):
            yield Static(WELCOME, id="welcome-text")
            with Horizontal(classes="choice"):
                yield Button("Local network on this machine", variant="primary", id="local")
            yield Label("or connect to a gateway:", classes="section")
            yield Input(self.app.link.settings.gateway_url,  # type: ignore[attr-defined]
                        placeholder="https://gateway.example", id="url")
            yield Input(placeholder="API key (optional on NEXUS: your wallet signs in)",
                        password=True, id="key")
            yield Button("Connect", id="connect")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#local", Button).focus()

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
        app.link.remember(**values)  # type: ignore[attr-defined]
        app.switch_mode(mode)
        app.reconnect()  # type: ignore[attr-defined]
