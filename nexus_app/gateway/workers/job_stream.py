"""One request's job across retries (`JobStream`): the events of the worker that holds it,
retried on another worker when one fails before its first chunk, cancelled on close. The
coordinator (`coordinator.py`) hands out the workers."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from nexus_app.gateway.errors import ApiError, BadRequest, NoWorker, UpstreamFailed
from nexus_app.gateway.workers.mailbox import (
    ClientBehind,
    Invalid,
    JobEvent,
    Mailbox,
)
from nexus_app.ids import new_id
from nexus_app.protocol import Cancel, Chunk, Done, Error, Job, JobKind, has_output

if TYPE_CHECKING:
    from nexus_app.gateway.workers.coordinator import Coordinator, WorkerLink

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
CANCEL_GRACE_S = 2.0
WORKER_REQUEST_ERRORS = {"invalid_request", "context_length_exceeded", "unsupported"}


class ClientTooSlow(ApiError):
    """The client read a streamed response so much slower than the worker produced it that
    the gateway stopped buffering: the job is cancelled and billed for what was delivered."""

    status, type, code = 408, "invalid_request_error", "client_too_slow"


class JobStream:
    """One request's job across retries. Iterate it for `Chunk`s and the final `Done`;
    always `close()` it, which cancels the job on its worker if it is still running.

    Every frame was checked by the job's guard before it gets here, so what is yielded may
    be relayed and a `done` may be settled. A worker whose result fails validation fails the
    job like an error does: retried on another worker before the first chunk, otherwise the
    stream ends with an error and the request is refunded in full (what was streamed so far
    is not billed, as when a worker is lost mid-stream)."""

    def __init__(
        self,
        coordinator: Coordinator,
        kind: JobKind,
        model: str,
        request: dict[str, Any],
        timeout_s: float,
    ) -> None:
        self.coordinator = coordinator
        # the worker gets the deadline as a wall-clock instant (it crosses machines); waits
        # here use the monotonic clock, which a clock step cannot move
        self.job = Job(job_id=new_id("job"), kind=kind, model=model,
                       request=request, deadline=time.time() + timeout_s)
        self.deadline = time.monotonic() + timeout_s
        self.worker: WorkerLink | None = None
        self.streamed = False
        self.finished = False
        self.delivered_bytes = 0
        self._attempts = 0
        self._events: Mailbox | None = None
        self._first_token_by = self.deadline
        self._tried: set[str] = set()  # workers this job was sent to
        self._failure: str | None = None  # why the last worker failed the job

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> Chunk | Done:
        if self.finished:
            raise StopAsyncIteration
        while True:
            try:
                if self._events is None:
                    await self._start()
                event = await self._next_event()
            except _Retry as retry:
                self._failed(retry)
                continue
            except ClientTooSlow:
                raise  # `close` ends the job and settles what was delivered
            except ApiError as error:
                self._release()
                self.finished = True
                if isinstance(error, NoWorker) and self._failure is not None:
                    raise UpstreamFailed(self._failure, retry_after=RETRY_AFTER_S) from None
                raise
            if isinstance(event, Done):
                self._count(event)
                self._release()
                self.finished = True
            return event

    def _failed(self, retry: _Retry) -> None:
        """The worker failed the job: count it against the worker (unless its guard did, or
        it is another replica's, which counts its own workers' failures: an outage between
        replicas is no worker's fault), then raise UpstreamFailed unless the job may be
        tried on another worker."""
        if self.worker is not None and not retry.counted and self.worker.replica is None:
            self.coordinator.job_failed(self.worker)
        self._release()
        if (self.streamed or self._attempts >= self.coordinator.attempts
                or time.monotonic() >= self.deadline):
            self.finished = True
            raise UpstreamFailed(retry.message, retry_after=RETRY_AFTER_S) from None
        self._failure = retry.message
        log.info("job %s: retrying on another worker (%s)", self.job.job_id, retry.message)

    async def _start(self) -> None:
        self._attempts += 1
        job = self.job
        self.worker, self._events = await self.coordinator._acquire(job, self.deadline,
                                                                    self._tried)
        self._tried.add(self.worker.id)
        self._first_token_by = time.monotonic() + self.coordinator.first_token_timeout_s
        try:
            await self.worker.send_frame(job)
        except Exception:
            raise _Retry("could not send the job to the worker") from None

    async def _next_event(self) -> Chunk | Done:
        assert self._events is not None
        limit = self.deadline if self.streamed else min(self.deadline, self._first_token_by)
        try:
            event = await self._events.get(limit)
        except TimeoutError:
            await self._send_cancel()
            raise _Retry("The worker did not answer in time.") from None
        if isinstance(event, Chunk):
            if has_output(event):  # an empty chunk only says the worker started the job
                self.streamed = True
                self.delivered_bytes += _chunk_bytes(event)
            return event
        if isinstance(event, Done):
            return event
        if isinstance(event, Error):
            if event.code in WORKER_REQUEST_ERRORS:
                raise BadRequest(event.message[:300] or "The model refused the request.",
                                 code=event.code)
            raise _Retry(f"worker error: {event.code}")
        return await self._not_a_result(event)

    async def _not_a_result(self, event: JobEvent) -> Chunk | Done:
        if isinstance(event, Invalid):
            await self._send_cancel()
            raise _Retry(f"The worker's result failed validation ({event.reason}); the "
                         "request was not charged.", counted=True)
        if isinstance(event, ClientBehind):
            raise ClientTooSlow("The client read the stream too slowly; the response was "
                                "cut off and only what was delivered is billed.")
        raise _Retry("The worker disconnected.")

    def _count(self, done: Done) -> None:
        self.coordinator.jobs_per_min.add(1)
        self.coordinator.tokens_per_min.add(done.usage.completion_tokens)
        if self.worker is not None:
            self.coordinator.job_served(self.worker)

    def _release(self) -> None:
        if self.worker is not None:
            self.coordinator._release(self.worker, self.job.job_id, self.job.model)
        self._events = None

    async def _send_cancel(self) -> None:
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await self.worker.send_frame(Cancel(job_id=self.job.job_id))

    async def close(self) -> Done | None:
        """End the job. If it was still running, cancel it on the worker and return the
        worker's final `done` when it reports one within a short grace period."""
        if self.finished or self._events is None:
            self._release()
            self.finished = True
            return None
        self.finished = True
        await self._send_cancel()
        events, ends = self._events, time.monotonic() + CANCEL_GRACE_S
        try:
            while time.monotonic() < ends:
                event = await events.get(ends)
                if isinstance(event, Done):
                    return event
                if not isinstance(event, Chunk | ClientBehind):
                    return None
        except TimeoutError:
            return None
        finally:
            self._release()
        return None


class _Retry(Exception):
    """The worker failed the job. `counted`: already counted against it (benched)."""

    def __init__(self, message: str, counted: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.counted = counted


def _chunk_bytes(chunk: Chunk) -> int:
    size = len(chunk.text.encode())
    for call in chunk.tool_calls or ():
        function = call.get("function") or {}
        for part in (function.get("name"), function.get("arguments")):
            if isinstance(part, str):
                size += len(part.encode())
    return size
