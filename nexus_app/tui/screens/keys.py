"""Keys: the account's API keys (name, prefix, created, last used), create (the secret is
shown once, with copy) and revoke (after a confirmation)."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Input

from nexus_app.client.http import ClientError
from nexus_app.tui.actions import bindings
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.tui.screens.dialogs import Confirm, ShowSecret
from nexus_app.tui.text import when


class KeysScreen(NexusScreen):
    BINDINGS = bindings("keys")

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield Input(placeholder="name of a new key, e.g. laptop", id="key-name")
            yield Button("Create key", variant="primary", id="create")
            yield Button("Revoke selected", variant="error", id="revoke")
        yield DataTable(id="keys", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#keys", DataTable).add_columns(
            "name", "prefix", "created", "last used", "state")
        super().on_mount()

    def on_online(self) -> None:
        self.refresh_keys()

    @work(exclusive=True, group="keys")
    async def refresh_keys(self) -> None:
        try:
            keys = await self.nexus.link.account_call(lambda c: c.list_keys())
        except ClientError as exc:
            self.report(exc, "Keys")
            return
        table = self.query_one("#keys", DataTable)
        table.clear()
        for key in keys:
            table.add_row(key.name, key.prefix + "…", when(key.created_at),
                          when(key.last_used_at), "revoked" if key.revoked else "active",
                          key=key.id)

    @on(Input.Submitted, "#key-name")
    @on(Button.Pressed, "#create")
    def action_create_key(self) -> None:
        name = self.query_one("#key-name", Input).value.strip() or "default"
        self.create_key(name)

    @work(exclusive=True, group="keys-change")
    async def create_key(self, name: str) -> None:
        try:
            key = await self.nexus.link.account_call(lambda c: c.create_key(name))
        except ClientError as exc:
            self.report(exc, "Create key")
            return
        self.query_one("#key-name", Input).value = ""
        self.app.push_screen(ShowSecret(
            f"API key “{key.name}”", key.key,
            "Shown only now: the gateway keeps just a hash. Copy it and store it safely.",
        ))
        self.refresh_keys()

    @on(Button.Pressed, "#revoke")
    def action_revoke_key(self) -> None:
        table = self.query_one("#keys", DataTable)
        if table.row_count == 0:
            self.notify("No key to revoke", severity="warning")
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        key_id = row_key.value
        name = table.get_row(row_key)[0]
        if key_id is None:
            return

        def revoke(yes: bool | None) -> None:
            if yes:
                self.revoke_key(key_id)

        self.app.push_screen(Confirm(f"Revoke the key “{name}”? Programs using it stop "
                                     "working at once.", "Revoke"), revoke)

    @work(exclusive=True, group="keys-change")
    async def revoke_key(self, key_id: str) -> None:
        try:
            await self.nexus.link.account_call(lambda c: c.revoke_key(key_id))
        except ClientError as exc:
            self.report(exc, "Revoke key")
            return
        self.notify("Key revoked")
        self.refresh_keys()
