"""Routing jobs to connected workers and relaying their frames back to the request.

A request becomes a `JobStream` (`job_stream.py`): it takes a slot on the least-loaded
worker serving the model (waiting in a bounded queue when all are busy), sends the `job` frame
and yields the worker's `chunk` frames, then its `done`. A worker that fails or disconnects
before the first chunk is replaced by another; after the first chunk the stream ends with an
error. Frames are checked against their job as they arrive (`job_guard`, `mailbox`): a worker
that sends what the job does not allow is benched at once, and disconnected when it sends
more than the job may relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nexus_app.gateway.errors import NoWorker
from nexus_app.gateway.workers.health import WorkerHealth
from nexus_app.gateway.workers.job_guard import JobGuard, RelayPolicy, Violation
from nexus_app.gateway.workers.job_stream import RETRY_AFTER_S, JobStream
from nexus_app.gateway.workers.mailbox import BEHIND, WORKER_LOST, Mailbox
from nexus_app.gateway.workers.prefix_routing import PrefixIndex
from nexus_app.gateway.workers.stats import RollingCounter
from nexus_app.ids import new_id
from nexus_app.protocol import (
    Cancel,
    Chunk,
    Done,
    Earnings,
    Error,
    Hardware,
    Job,
    JobKind,
    ModelCard,
    Status,
    encode,
)

log = logging.getLogger(__name__)

MAX_REMEMBERED_MODELS = 4096  # model ids served since start that are kept (see `has_served`)
SEND_TIMEOUT_S = 10.0  # a frame to a worker that does not read its socket is given up after it
# a worker holding a conversation's prefix is preferred while its load (share of its slots in
# use) exceeds the least-loaded worker's by at most this much
PREFIX_LOAD_SLACK = 0.5


@dataclass(eq=False)
class WorkerLink:
    """A connected, authenticated worker."""

    wallet: str
    models: dict[str, ModelCard]
    slots: int
    hardware: Hardware
    version: str
    send: Callable[[str], Awaitable[None]]
    id: str = field(default_factory=lambda: new_id("wkr"))
    connected_at: float = field(default_factory=time.time)
    jobs: dict[str, Mailbox] = field(default_factory=dict)
    finished: deque[str] = field(default_factory=lambda: deque(maxlen=512))
    jobs_done: int = 0
    tokens_per_s: float | None = None
    draining: bool = False  # the worker offered no slots: it is finishing its jobs to stop
    replica: str | None = None  # the replica it is attached to, when not this one

    @property
    def load(self) -> float:
        return len(self.jobs) / self.slots

    async def send_frame(self, frame: Any) -> None:
        """Send a frame; TimeoutError when the worker does not take it in SEND_TIMEOUT_S."""
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await self.send(encode(frame))


class UnknownJob(Exception):
    """A worker sent a frame for a job it was never given."""


class Overrun(Exception):
    """A worker sent more output than a job may relay: its connection is closed."""


class Coordinator:
    """The registry of online workers and the dispatcher of jobs."""

    def __init__(self, *, queue_max: int, queue_timeout_s: float, attempts: int,
                 first_token_timeout_s: float, health: WorkerHealth,
                 relay: RelayPolicy | None = None, prefixes: PrefixIndex | None = None) -> None:
        self.queue_max = queue_max
        self.queue_timeout_s = queue_timeout_s
        self.attempts = attempts
        self.first_token_timeout_s = first_token_timeout_s
        self.health = health
        self.relay = relay or RelayPolicy()
        self.prefixes = prefixes  # where each conversation's earlier turns went (None: off)
        self.workers: dict[str, WorkerLink] = {}
        # workers attached to other replicas (`registry.py`), reached through Redis
        self.remote: dict[str, WorkerLink] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self.jobs_per_min = RollingCounter(60)
        self.tokens_per_min = RollingCounter(60)
        self.first_seen: dict[str, float] = {}  # model ids served since start, oldest first
        self.earnings_changed: set[str] = set()
        self.on_model_gone: Callable[[str], None] | None = None  # no worker serves it now
        self._cancels: set[asyncio.Task[None]] = set()  # cancels of jobs whose client is behind

    # registry ----------------------------------------------------------------------------------

    def register(self, worker: WorkerLink) -> None:
        self.workers[worker.id] = worker
        for model in worker.models:
            self._remember(model)
            for _ in range(worker.slots):
                self._wake(model)
        log.info("worker %s online: %d slot(s), models %s", worker.id, worker.slots,
                 ", ".join(worker.models))

    def unregister(self, worker: WorkerLink) -> None:
        self.workers.pop(worker.id, None)
        for events in worker.jobs.values():
            events.put(WORKER_LOST)
        log.info("worker %s offline (%d job(s) in flight)", worker.id, len(worker.jobs))
        for model in worker.models:
            if not self.serves(model) and self.on_model_gone is not None:
                self.on_model_gone(model)

    def _remember(self, model: str) -> None:
        """Note when `model` was first served. Memory stays bounded (workers may advertise
        any ids): past the limit, the oldest id no worker serves now is forgotten."""
        if model in self.first_seen:
            return
        if len(self.first_seen) >= MAX_REMEMBERED_MODELS:
            served = {m for w in self.workers.values() for m in w.models}
            oldest = next((m for m in self.first_seen if m not in served), None)
            if oldest is not None:
                del self.first_seen[oldest]
        self.first_seen[model] = time.time()

    def has_served(self, model: str) -> bool:
        """Whether a worker served `model` since the gateway started (among the last
        MAX_REMEMBERED_MODELS ids)."""
        return model in self.first_seen

    def everywhere(self) -> Iterator[WorkerLink]:
        """The workers of this replica, then those of the others."""
        yield from self.workers.values()
        yield from self.remote.values()

    def model_cards(self) -> dict[str, tuple[ModelCard, int]]:
        """Each model served now, with one card and the number of workers serving it."""
        cards: dict[str, tuple[ModelCard, int]] = {}
        for worker in self.everywhere():
            for model_id, card in worker.models.items():
                count = cards[model_id][1] + 1 if model_id in cards else 1
                cards[model_id] = (card, count)
        return cards

    def card(self, model: str) -> ModelCard | None:
        for worker in self.everywhere():
            if model in worker.models:
                return worker.models[model]
        return None

    def workers_for(self, wallet: str) -> list[WorkerLink]:
        return [w for w in self.workers.values() if w.wallet == wallet]

    async def send_earnings(self, wallet: str, earned: int, paid: int, *,
                            everywhere: bool = True) -> None:
        """Tell every connection of `wallet` its earnings; `everywhere`: also those attached
        to other replicas (one frame to each, which passes it on to its own)."""
        frame = Earnings(earned=earned, paid=paid)
        replicas: set[str] = set()
        links = [w for w in self.remote.values() if w.wallet == wallet] if everywhere else []
        for worker in [*self.workers_for(wallet), *links]:
            if worker.replica in replicas:
                continue
            if worker.replica is not None:
                replicas.add(worker.replica)
            with contextlib.suppress(Exception):
                await worker.send_frame(frame)

    def job_served(self, worker: WorkerLink) -> None:
        worker.jobs_done += 1
        self.health.succeeded(worker.wallet)

    def job_failed(self, worker: WorkerLink) -> None:
        """Count a job the worker failed (an error, a stall, a lost connection); a wallet
        benched by it gets its slots back, and queued requests woken, when the bench ends."""
        benched_for = self.health.failed(worker.wallet)
        if benched_for is not None:
            asyncio.get_running_loop().call_later(benched_for, self._wake_wallet, worker.wallet)

    def misbehaved(self, worker: WorkerLink, reason: str) -> None:
        """Bench the worker's wallet at once: it broke a limit of the protocol or sent a
        result that failed validation, which no honest worker does by bad luck."""
        log.warning("worker %s benched: %s", worker.id, reason)
        benched_for = self.health.misbehaved(worker.wallet)
        asyncio.get_running_loop().call_later(benched_for, self._wake_wallet, worker.wallet)

    def _wake_wallet(self, wallet: str) -> None:
        for worker in self.workers_for(wallet):
            for model in worker.models:
                for _ in range(worker.slots):
                    self._wake(model)

    def queue_depth(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    # frames from workers ----------------------------------------------------------------------

    def on_frame(self, worker: WorkerLink, frame: Chunk | Done | Error | Status,
                 size: int = 0) -> None:
        """Route a worker's frame (`size`: its length as received) to its job. Raises
        UnknownJob or Overrun when the connection must be closed."""
        if isinstance(frame, Status):
            worker.tokens_per_s = frame.tokens_per_s
            worker.draining = frame.slots == 0
            if frame.hardware is not None:
                worker.hardware = frame.hardware
            return
        job_id = frame.job_id
        if job_id is None:  # an error about the worker itself
            log.warning("worker %s reported %s", worker.id, frame.code)  # type: ignore[union-attr]
            return
        events = worker.jobs.get(job_id)
        if events is None:
            if job_id not in worker.finished:
                raise UnknownJob(job_id)
            return
        was_behind = events.state == BEHIND
        try:
            events.deliver(frame, size)
        except Violation as violation:
            self.misbehaved(worker, f"job {job_id}: {violation.reason}")
            if violation.overrun:
                raise Overrun(violation.reason) from None
            return
        if events.state == BEHIND:
            self._client_behind(worker, job_id, events, was_behind, frame)

    def _client_behind(self, worker: WorkerLink, job_id: str, events: Mailbox,
                       was_behind: bool, frame: Chunk | Done | Error) -> None:
        """A job whose client fell behind: cancel it on its worker at once, and give the
        worker's slot back when it ends (its `done` waits for the client's settlement)."""
        if not was_behind:
            log.info("job %s: the client reads too slowly, cancelling it", job_id)
            task = asyncio.get_running_loop().create_task(self._cancel(worker, job_id))
            self._cancels.add(task)
            task.add_done_callback(self._cancels.discard)
        elif not isinstance(frame, Chunk):
            self._release(worker, job_id, events.model)

    @staticmethod
    async def _cancel(worker: WorkerLink, job_id: str) -> None:
        with contextlib.suppress(Exception):
            await worker.send_frame(Cancel(job_id=job_id))

    # dispatch ----------------------------------------------------------------------------------

    def _pick(self, model: str, tried: set[str], cached: dict[str, int]) -> WorkerLink | None:
        """A free worker serving `model`: one not `tried` yet; then the one holding the
        deepest prefix of the prompt in its cache (`cached`: blocks by worker id), unless it is
        busier than the least-loaded by more than PREFIX_LOAD_SLACK; then one of this replica
        (a job relayed through another costs a hop per chunk); then the least loaded."""
        free = [worker for worker in self.everywhere()
                if model in worker.models and len(worker.jobs) < worker.slots
                and not worker.draining and self.health.available(worker.wallet)]
        if not free:
            return None
        least = min(worker.load for worker in free)

        def rank(worker: WorkerLink) -> tuple[bool, int, bool, float]:
            depth = cached.get(worker.id, 0) if worker.load <= least + PREFIX_LOAD_SLACK else 0
            return (worker.id in tried, -depth, worker.replica is not None, worker.load)

        return min(free, key=rank)

    def serves(self, model: str) -> bool:
        return any(model in w.models for w in self.everywhere())

    def _may_serve(self, model: str) -> bool:
        """A worker serving `model` is not cooling down or paused."""
        return any(model in w.models and self.health.available(w.wallet)
                   for w in self.everywhere())

    def _bench_ends_in(self, model: str) -> int:
        """Whole seconds until the first benched worker serving `model` may take jobs."""
        left = min((self.health.benched_for(w.wallet) for w in self.everywhere()
                    if model in w.models), default=0.0)
        return max(1, math.ceil(left))

    def wake(self, model: str) -> None:
        """Let one request waiting for `model` try again (a slot may be free)."""
        self._wake(model)

    def _wake(self, model: str) -> None:
        waiters = self._waiters.get(model)
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return

    async def _acquire(self, job: Job, deadline: float,
                       tried: set[str]) -> tuple[WorkerLink, Mailbox]:
        """Take a slot on the least-loaded worker serving the job's model (one not `tried`
        for this job yet, if one is free), waiting if all are busy, at most until `deadline`
        (a `time.monotonic()` instant)."""
        model = job.model
        prefixes = self.prefixes.hashes(model, job.request) if self.prefixes is not None else []
        while True:
            cached = self.prefixes.matches(prefixes) if self.prefixes is not None else {}
            worker = self._pick(model, tried, cached)
            if worker is not None:
                events = Mailbox(JobGuard(job, self.relay), model, self.relay.buffer_bytes)
                worker.jobs[job.job_id] = events
                if self.prefixes is not None:
                    self.prefixes.given(worker.id, prefixes)
                return worker, events
            if not self.serves(model):
                raise NoWorker(f"No worker is online for model '{model}'.",
                               retry_after=RETRY_AFTER_S)
            if not self._may_serve(model):
                raise NoWorker(f"The workers of model '{model}' are cooling down after failed "
                               "jobs.", retry_after=self._bench_ends_in(model))
            if self.queue_depth() >= self.queue_max:
                raise NoWorker("All workers are busy and the queue is full.",
                               retry_after=RETRY_AFTER_S)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(model, deque())
            waiters.append(future)
            timeout = min(self.queue_timeout_s, deadline - time.monotonic())
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise NoWorker("Timed out waiting for a free worker.",
                               retry_after=RETRY_AFTER_S) from None
            finally:
                with contextlib.suppress(ValueError):
                    waiters.remove(future)
                if not waiters and self._waiters.get(model) is waiters:
                    del self._waiters[model]  # one queue per model waited for now, no more

    def _release(self, worker: WorkerLink, job_id: str, model: str) -> None:
        if worker.jobs.pop(job_id, None) is not None:
            worker.finished.append(job_id)
            self._wake(model)

    def submit(
        self, kind: JobKind, model: str, request: dict[str, Any], timeout_s: float
    ) -> JobStream:
        return JobStream(self, kind, model, request, timeout_s)
