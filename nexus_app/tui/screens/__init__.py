"""The app's screens, one module each, imported when first shown (a fast first frame)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from textual.screen import Screen


def _lazy(module: str, name: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        screen: Screen[Any] = getattr(importlib.import_module(f"{__name__}.{module}"), name)()
        return screen

    return make


MODES: dict[str, str | Callable[[], Screen[Any]]] = {
    "chat": _lazy("chat", "ChatScreen"),
    "wallet": _lazy("wallet", "WalletScreen"),
    "keys": _lazy("keys", "KeysScreen"),
    "worker": _lazy("worker", "WorkerScreen"),
    "network": _lazy("network", "NetworkScreen"),
    "settings": _lazy("settings", "SettingsScreen"),
}
