"""One registry of the terminal app's actions: it feeds the key bindings (each with an id and
a tooltip), the command palette and the help screen, so the three always agree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Action:
    id: str
    key: str
    action: str  # a Textual action of the screen (or of the app, for global ones)
    title: str
    help: str
    screen: str | None = None  # the screen (mode) it belongs to; None: everywhere
    show: bool = True
    priority: bool = False  # before the focused widget's own binding of the key (an Input's)


SCREENS = {
    "chat": "Chat",
    "wallet": "Wallet",
    "keys": "Keys",
    "worker": "Worker",
    "network": "Network",
    "settings": "Settings",
}

ACTIONS = [
    Action("help", "f1", "app.help", "Help", "Show every key binding and command"),
    *(
        Action(f"go-{name}", f"f{number}", f"app.go('{name}')", title,
              f"Open the {title} screen")
        for number, (name, title) in enumerate(SCREENS.items(), start=2)
    ),
    Action("quit", "ctrl+q", "app.quit", "Quit", "Quit nexus-app (the worker drains first)"),
    Action("chat-new", "ctrl+n", "new_conversation", "New chat", "Start a new conversation",
           "chat"),
    Action("chat-rename", "ctrl+r", "rename_conversation", "Rename",
           "Rename the current conversation", "chat", show=False),
    Action("chat-delete", "ctrl+d", "delete_conversation", "Delete",
           "Delete the current conversation (after a confirmation)", "chat", priority=True),
    Action("chat-copy", "ctrl+y", "copy_reply", "Copy reply", "Copy the last reply", "chat",
           show=False),
    Action("chat-cancel", "escape", "cancel_reply", "Cancel", "Stop the reply being written",
           "chat"),
    Action("chat-models", "ctrl+m", "refresh_models", "Models",
           "Reload the model list from the server", "chat", show=False),
    Action("chat-settings", "ctrl+o", "chat_settings", "Settings",
           "This conversation's model, system prompt and sampling", "chat"),
    Action("chat-regenerate", "ctrl+g", "regenerate", "Regenerate",
           "Replace the last reply with a new one", "chat"),
    Action("chat-edit", "ctrl+t", "edit_message", "Edit",
           "Edit the last message and send it again", "chat"),
    Action("chat-search", "ctrl+f", "search", "Search", "Search every conversation", "chat"),
    Action("chat-export", "ctrl+s", "export", "Export",
           "Save the conversation as a Markdown file", "chat", show=False),
    Action("wallet-refresh", "ctrl+r", "refresh", "Refresh", "Reload balances and deposits",
           "wallet"),
    Action("wallet-faucet", "ctrl+f", "faucet", "Faucet",
           "Mint 100 test $NEXUS to the wallet (local chain)", "wallet"),
    Action("wallet-deposit", "ctrl+s", "deposit", "Deposit",
           "Deposit the amount in the form into credit", "wallet"),
    Action("keys-create", "ctrl+n", "create_key", "Create key", "Create an API key", "keys"),
    Action("keys-revoke", "ctrl+d", "revoke_key", "Revoke",
           "Revoke the selected key (after a confirmation)", "keys", priority=True),
    Action("keys-refresh", "ctrl+r", "refresh", "Refresh", "Reload the keys", "keys"),
    Action("worker-toggle", "ctrl+t", "toggle_worker", "Worker on/off",
           "Start or stop serving a model from this machine", "worker"),
    Action("worker-claim", "ctrl+l", "claim", "Claim", "Pay the earnings to the wallet",
           "worker"),
    Action("network-refresh", "ctrl+r", "refresh", "Refresh", "Reload the network view",
           "network"),
    Action("settings-save", "ctrl+s", "save", "Save", "Save the settings", "settings"),
]


def bindings(screen: str | None) -> list[BindingType]:
    """The key bindings of `screen` (None: the app's global ones)."""
    return [
        Binding(a.key, a.action.removeprefix("app.") if screen is None else a.action,
                a.title, show=a.show, tooltip=a.help, id=a.id, priority=a.priority)
        for a in ACTIONS if a.screen == screen
    ]
