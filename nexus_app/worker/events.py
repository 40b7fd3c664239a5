"""What one request to the engine yields, in order: `Text` pieces, then one `Finished`,
`Failed` or `Embedded`; the `Stream` carries them from the engine thread to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from nexus_app.protocol import TokenLogprob


@dataclass(frozen=True)
class Text:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens that made this text, if asked


# why the engine ended a sequence (the worker may turn a stop after a tool call into tool_calls)
EngineStop = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Finished:
    reason: EngineStop
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt's, those found in the slot's cache (not fed again)


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    prompt_tokens: int


Event = Text | Finished | Failed | Embedded


class Stream:
    """The events of one submitted request, consumed on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = False

    def put(self, event: Event) -> None:
        """Called from the engine thread; a consumer whose loop has closed gets nothing."""
        with contextlib.suppress(RuntimeError):  # "Event loop is closed"
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def cancel(self) -> None:
        """Stop generating at the next step (any thread)."""
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            yield event
            if not isinstance(event, Text):
                return


class Outbox:
    """The events the engine thread produced in one step, handed to the event loop in one
    call: one wake-up of the loop per step instead of one per token of every sequence."""

    def __init__(self) -> None:
        self._items: list[tuple[Stream, Event]] = []

    def put(self, stream: Stream, event: Event) -> None:
        self._items.append((stream, event))

    def flush(self) -> None:
        """Deliver what was put, in order; a consumer whose loop has closed gets nothing."""
        if not self._items:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Stream, Event]]] = {}
        for stream, event in self._items:
            by_loop.setdefault(stream._loop, []).append((stream, event))
        self._items = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                loop.call_soon_threadsafe(_deliver, items)


def _deliver(items: list[tuple[Stream, Event]]) -> None:
    for stream, event in items:
        stream._queue.put_nowait(event)
