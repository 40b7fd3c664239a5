"""Settings: network, gateway URL, API key, wallet file and theme, saved to the config file."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Button, Input, Label, Select

from nexus_app.tui.actions import bindings
from nexus_app.tui.screens.base import NexusScreen


class SettingsScreen(NexusScreen):
    needs_nexus = False
    BINDINGS = bindings("settings")

    def compose_body(self) -> ComposeResult:
        settings = self.nexus.settings
        with Grid(id="settings-form"):
            yield Label("Network")
            yield Select([("Local network on this machine", "local"),
                          ("A gateway or OpenAI-compatible server", "remote")],
                         value=settings.network or Select.BLANK, id="network-choice")
            yield Label("Gateway URL")
            yield Input(settings.gateway_url, id="gateway-url")
            yield Label("API key")
            yield Input(settings.api_key.get_secret_value() if settings.api_key else "",
                        password=True, placeholder="nex_live_… (created for you on NEXUS)",
                        id="api-key")
            yield Label("Wallet file")
            yield Input(str(settings.wallet_path), id="wallet-path")
            yield Label("Theme")
            yield Select([(name, name) for name in sorted(self.app.available_themes)],
                         value=self.app.theme, allow_blank=False, id="theme")
            yield Label("")
            yield Button("Save and reconnect", variant="primary", id="save")

    @on(Select.Changed, "#theme")
    def _preview_theme(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.app.theme = event.value

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        network = self.query_one("#network-choice", Select).value
        url = self.query_one("#gateway-url", Input).value.strip()
        if not url.startswith(("http://", "https://")):
            self.notify("The gateway URL must start with http:// or https://", severity="error")
            return
        key = self.query_one("#api-key", Input).value.strip()
        self.nexus.link.remember(
            network=network if isinstance(network, str) else None,
            gateway_url=url.rstrip("/"),
            api_key=key or None,
            wallet=Path(self.query_one("#wallet-path", Input).value.strip()).expanduser(),
            theme=self.app.theme,
        )
        self.notify("Settings saved")
        self.nexus.reconnect()
