"""The events of one job on its worker, between the worker's socket and the request.

A worker's frames are checked by the job's guard as they arrive (`Mailbox.deliver`), and
what waits for the reader is bounded, so that neither a worker nor a slow client can make the
gateway hold more than a job's limits allow.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from nexus_app.gateway.workers.job_guard import JobGuard, Violation
from nexus_app.protocol import Chunk, Done, Error


class WorkerLost:
    """Queued to a job's events when its worker disconnects."""


class ClientBehind:
    """Queued in place of a job's unread events when its client fell too far behind."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Queued in place of a job's events when its worker sent a frame the job does not
    allow (see `job_guard`)."""

    reason: str


WORKER_LOST = WorkerLost()
CLIENT_BEHIND = ClientBehind()
JobEvent = Chunk | Done | Error | WorkerLost | ClientBehind | Invalid
OPEN, BEHIND, FAILED = 0, 1, 2  # a mailbox's states


class Mailbox:
    """The events of one job: a deque and at most one waiting reader (much lighter than an
    `asyncio.Queue`, which matters at thousands of jobs per second).

    A worker's frames are checked by the job's guard as they arrive (`deliver`). What waits
    for the reader is bounded: past `limit` bytes of unread chunks the client is too slow,
    and they are dropped for CLIENT_BEHIND (only a `done` or `error` is kept after it)."""

    __slots__ = ("_items", "_waiter", "guard", "limit", "model", "pending", "state")

    def __init__(self, guard: JobGuard, model: str, limit: int) -> None:
        self._items: deque[tuple[JobEvent, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.guard = guard
        self.model = model
        self.limit = limit
        self.pending = 0  # bytes of the chunks waiting for the reader
        self.state = OPEN

    def put(self, item: JobEvent, size: int = 0) -> None:
        self._items.append((item, size))
        self.pending += size
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def deliver(self, frame: Chunk | Done | Error, size: int) -> None:
        """Check a worker's frame (`size`: its length as received) and queue it; on a
        Violation, queue the failure in place of every unread event, then raise it."""
        if self.state == FAILED:
            return
        try:
            if isinstance(frame, Chunk):
                frame = self.guard.chunk(frame, size)
            elif isinstance(frame, Done):
                frame = self.guard.done(frame)
        except Violation as violation:
            self.state = FAILED
            self._replace(Invalid(violation.reason))
            raise
        if not isinstance(frame, Chunk):
            self.put(frame)
        elif self.state == OPEN:
            self.put(frame, size)
            if self.pending > self.limit:
                self.state = BEHIND
                self._replace(CLIENT_BEHIND)

    def _replace(self, item: JobEvent) -> None:
        self._items.clear()
        self.pending = 0
        self.put(item)

    async def get(self, until: float) -> JobEvent:
        """The next event; TimeoutError if none has come by `until` (a `time.monotonic()`
        instant). An event already waiting is returned at once, with no timer: a stream
        takes one event per token, and an `asyncio.timeout` per event cost more than the rest
        of the relay."""
        while not self._items:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(until - time.monotonic(), _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        item, size = self._items.popleft()
        self.pending -= size
        return item


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
