"""What one request to the engine yields, in order: `Started` once a generation has its slot,
`Text` pieces, then one `Finished`, `Failed` or `Embedded`; the `Stream` carries them from the
engine thread to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from nexus_app.protocol import TokenLogprob


@dataclass(frozen=True)
class Started:
    """The engine took a generation into a slot and decodes its prompt now: nothing can refuse
    the request any more (the worker tells the gateway, which answers the client's headers
    while the prompt decodes)."""


STARTED = Started()


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


Event = Started | Text | Finished | Failed | Embedded


class Stream:
    """The events of one submitted request, consumed on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Made on `loop`'s thread (its doorbell registers there)."""
        self._doorbell = Doorbell.of(loop)
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = False

    def put(self, event: Event) -> None:
        """Hand one event to the consumer (any thread); nothing when its loop has closed."""
        self._doorbell.ring([(self, event)])

    def cancel(self) -> None:
        """Stop generating at the next step (any thread)."""
        self.cancelled = True

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            yield event
            if not isinstance(event, Started | Text):
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
        by_bell: dict[Doorbell, list[tuple[Stream, Event]]] = {}
        for stream, event in self._items:
            by_bell.setdefault(stream._doorbell, []).append((stream, event))
        self._items = []
        for doorbell, items in by_bell.items():
            doorbell.ring(items)


def _deliver(items: list[tuple[Stream, Event]]) -> None:
    for stream, event in items:
        stream._queue.put_nowait(event)


def _write_holding_the_gil() -> Callable[[int, bytes, int], int] | None:
    """libc's `write`, called without letting go of the GIL (None where there is no libc)."""
    try:
        write = ctypes.PyDLL(None).write
    except (OSError, AttributeError, TypeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write  # type: ignore[no-any-return]


_WRITE = _write_holding_the_gil() if os.name == "posix" else None


class Doorbell:
    """Wakes one event loop from the engine thread with the events of a step.

    `loop.call_soon_threadsafe` wakes a loop with a socket write that lets go of the GIL: the
    woken loop thread takes it, and the engine thread, whose next `llama_decode` waits, gets it
    back only when the loop's callbacks give it up (0.10-0.15 ms a step, measured). Here the
    wake-up byte goes into a pipe the loop reads, written with the GIL held: the loop runs
    once the engine lets go of the GIL by itself, in `llama_decode`, and decodes meanwhile.
    Without libc (Windows) it is `call_soon_threadsafe`."""

    _of_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Doorbell]] = (
        weakref.WeakKeyDictionary())

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Doorbell:
        """The doorbell of `loop`, made and registered on first use (on the loop's thread)."""
        doorbell = cls._of_loop.get(loop)
        if doorbell is None:
            doorbell = cls._of_loop[loop] = cls(loop)
        return doorbell

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop_ref = weakref.ref(loop)
        self._pending: deque[list[tuple[Stream, Event]]] = deque()
        self._pipe: tuple[int, int] | None = None
        if _WRITE is not None:
            self._pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            loop.add_reader(self._pipe[0], self._rung)
            weakref.finalize(self, _close_pipe, self._pipe, loop_ref)

    def ring(self, items: list[tuple[Stream, Event]]) -> None:
        """Hand `items` to the loop (from any thread); nothing when the loop has closed."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            return
        if self._pipe is None or _WRITE is None:
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                loop.call_soon_threadsafe(_deliver, items)
            return
        self._pending.append(items)
        _WRITE(self._pipe[1], b"!", 1)  # a full pipe already rings: its failure is harmless

    def _rung(self) -> None:
        assert self._pipe is not None
        with contextlib.suppress(BlockingIOError):
            os.read(self._pipe[0], 4096)
        while self._pending:
            _deliver(self._pending.popleft())


def _close_pipe(pipe: tuple[int, int],
                loop_ref: weakref.ReferenceType[asyncio.AbstractEventLoop]) -> None:
    loop = loop_ref()
    if loop is not None and not loop.is_closed():
        loop.remove_reader(pipe[0])
    for fd in pipe:
        os.close(fd)
