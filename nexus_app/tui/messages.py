"""Messages the app's parts send each other, kept apart from their senders and receivers so
that screens and the app import this module rather than each other."""

from __future__ import annotations

from textual.message import Message

from nexus_app.worker.status import NodeStatus


class NodeStatusChanged(Message):
    """The in-process worker node's status changed (posted from the worker's thread)."""

    def __init__(self, status: NodeStatus) -> None:
        super().__init__()
        self.status = status


class ModelLoadProgress(Message):
    """Bytes of the model's file read so far, of `total` (posted from the worker's thread)."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done, self.total = done, total


class FirstFrame(Message):
    """The app's first frame is on its way to the terminal (posted to the first screen, which
    may add what could wait for it)."""
