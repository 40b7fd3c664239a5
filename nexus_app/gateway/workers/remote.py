"""Cross-replica jobs: a job taken by replica B whose best worker is attached to replica A
goes to A through Redis, and A's worker's frames come back to B the same way.

Each replica listens on its own pub/sub channel (`<prefix>inbox:<replica>`). B sends a job
or a cancel as the worker frame it would have sent on the socket; A runs the job on its own
coordinator (no billing there: the replica that took the request bills it, once) and relays
each event back with a sequence number, its `done` or `error` ending the job. A gap in the
numbers fails the job on B as a lost worker would. B learns that A is gone from the worker
registry (`registry.py`), which ends A's jobs with WORKER_LOST: retried elsewhere before the
first chunk, otherwise an error event and a full refund.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nexus_app.gateway.errors import ApiError
from nexus_app.gateway.workers.coordinator import Overrun, UnknownJob
from nexus_app.gateway.workers.job_stream import JobStream
from nexus_app.gateway.workers.mailbox import WORKER_LOST
from nexus_app.protocol import (
    Cancel,
    Chunk,
    Done,
    Earnings,
    Error,
    Job,
    ProtocolError,
    encode,
    parse_gateway_frame,
    parse_worker_frame,
)

if TYPE_CHECKING:
    from nexus_app.gateway.workers.coordinator import Coordinator, WorkerLink

log = logging.getLogger(__name__)

FAILURES = (RedisError, OSError, TimeoutError)
RETRY_S = 1.0
UNSEEN_AFTER_S = 1.5  # a job sent this long ago must be listed by the replica serving it


class RemoteJobs:
    """This replica's end of cross-replica jobs: it sends jobs to other replicas' workers,
    serves the jobs they send to its own, and routes the replies."""

    def __init__(self, client: aioredis.Redis, prefix: str, replica: str,
                 coordinator: Coordinator, subscriber: aioredis.Redis | None = None) -> None:
        self._client, self._prefix, self.replica = client, prefix, replica
        self._subscriber = subscriber or client  # one that does not retry (a resubscription
        # behind this reader's back would hide lost replies)
        self.coordinator = coordinator
        self._serving: dict[str, JobStream] = {}  # jobs other replicas sent here
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_seq: dict[str, int] = {}  # of jobs sent elsewhere: the reply expected next
        self._sent_at: dict[str, float] = {}  # of jobs sent elsewhere: when
        self._unseen: dict[str, int] = {}  # of those: registry rounds that did not list them
        self.listening = asyncio.Event()

    def inbox(self, replica: str) -> str:
        return f"{self._prefix}inbox:{replica}"

    def sender(self, replica: str, link: str) -> Callable[[str], Awaitable[None]]:
        """The `send` of the link `link` to a worker on `replica`: a frame for it, through
        Redis (the replies name the link)."""
        channel = self.inbox(replica)

        async def send(text: str) -> None:
            frame = orjson.loads(text)
            if frame["type"] == "job":
                self._sent_at[frame["job_id"]] = time.monotonic()
            message = orjson.dumps({"t": "to", "o": self.replica, "w": link, "f": text})
            if not await self._client.publish(channel, message):
                raise ConnectionError(f"replica {replica} is not listening")
        return send

    # the replica that took the request ------------------------------------------------------

    def _reply(self, message: dict[str, Any]) -> None:
        link = self.coordinator.remote.get(message["w"])
        job_id = message["j"]
        if link is None or job_id not in link.jobs:
            self._next_seq.pop(job_id, None)
            return  # the job ended here already (cancelled, or its replica was given up)
        expected = self._next_seq.get(job_id, 0)
        if message["s"] != expected:
            log.warning("job %s: reply %s from replica %s, expected %d: failing the job",
                        job_id, message["s"], link.replica, expected)
            link.jobs[job_id].put(WORKER_LOST)
            return
        self._next_seq[job_id] = expected + 1
        text = message["f"]
        frame = parse_worker_frame(text)
        if not isinstance(frame, Chunk):
            self._next_seq.pop(job_id, None)
        with contextlib.suppress(UnknownJob, Overrun):  # the guard failed the job already
            self.coordinator.on_frame(link, frame, len(text))  # type: ignore[arg-type]

    @property
    def serving(self) -> list[str]:
        """The jobs other replicas sent here that are running (the registry lists them)."""
        return list(self._serving)

    def check(self, serving: dict[str, set[str]]) -> None:
        """Fail the jobs sent elsewhere that their replica no longer lists (`serving`: the
        jobs each replica listed) in two registry rounds in a row: it never got them, or
        their replies were lost (Redis restarted between them). A job ends before its
        replica stops listing it, so its last replies arrive first."""
        now = time.monotonic()
        for link in self.coordinator.remote.values():
            listed = serving.get(link.replica or "", set())
            for job_id, events in link.jobs.items():
                if job_id in listed or now - self._sent_at.get(job_id, now) < UNSEEN_AFTER_S:
                    self._unseen.pop(job_id, None)
                    continue
                self._unseen[job_id] = self._unseen.get(job_id, 0) + 1
                if self._unseen[job_id] == 2:
                    log.warning("job %s: replica %s does not run it; failing it", job_id,
                                link.replica)
                    events.put(WORKER_LOST)
        live = {job_id for link in self.coordinator.remote.values() for job_id in link.jobs}
        for table in (self._sent_at, self._unseen, self._next_seq):
            for job_id in [j for j in table if j not in live]:
                del table[job_id]

    def _fail_all(self) -> None:
        for link in self.coordinator.remote.values():
            self.lost(link)

    def lost(self, link: WorkerLink) -> None:
        """`link`'s replica is gone: its jobs end as with a lost worker."""
        for job_id, events in link.jobs.items():
            self._next_seq.pop(job_id, None)
            events.put(WORKER_LOST)

    # the replica the worker is attached to ---------------------------------------------------

    def _request(self, origin: str, link: str, text: str) -> None:
        frame = parse_gateway_frame(text)
        if isinstance(frame, Job):
            self._spawn(self._serve(origin, link, frame))
        elif isinstance(frame, Earnings):  # of a wallet whose job `origin` billed
            worker = next((w for w in self.coordinator.workers.values() if w.id == link), None)
            if worker is not None:
                self._spawn(self.coordinator.send_earnings(
                    worker.wallet, frame.earned, frame.paid, everywhere=False))
        elif isinstance(frame, Cancel):
            stream = self._serving.get(frame.job_id)
            if stream is not None and stream.worker is not None:
                self._spawn(self._cancel(stream.worker, frame))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _cancel(worker: WorkerLink, cancel: Cancel) -> None:
        """Cancel on the worker; its final `done` is relayed like any event."""
        with contextlib.suppress(Exception):
            await worker.send_frame(cancel)

    async def _serve(self, origin: str, link: str, job: Job) -> None:
        """Run `job` on a worker here (this coordinator picks which), relaying its events to
        `origin` in order."""
        stream = self.coordinator.submit(job.kind, job.model, job.request,
                                         max(1.0, job.deadline - time.time()))
        stream.job = job  # the same id on both replicas: replies need no translation
        self._serving[job.job_id] = stream
        channel, seq = self.inbox(origin), 0
        try:
            async for event in stream:
                await self._send_reply(channel, link, job.job_id, seq, event)
                seq += 1
        except ApiError as error:
            failed = Error(job_id=job.job_id, code=error.code or "worker_error",
                           message=str(error)[:300])
            await self._send_reply(channel, link, job.job_id, seq, failed)
        except FAILURES as exc:
            log.warning("job %s for replica %s: its replies cannot be sent (%s)", job.job_id,
                        origin, type(exc).__name__)
        finally:
            self._serving.pop(job.job_id, None)
            await stream.close()

    async def _send_reply(self, channel: str, link: str, job_id: str, seq: int,
                          event: Chunk | Done | Error) -> None:
        message = orjson.dumps({"t": "re", "w": link, "j": job_id, "s": seq,
                                "f": encode(event)})
        try:
            await self._client.publish(channel, message)
        except FAILURES:  # once more, on a fresh connection (Redis may have restarted)
            await self._client.publish(channel, message)

    # the inbox --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Listen on this replica's inbox until cancelled, resubscribing after an outage."""
        while True:
            try:
                await self._listen()
            except FAILURES as exc:
                self.listening.clear()
                log.warning("cross-replica inbox: %s; resubscribing", type(exc).__name__)
                self._fail_all()  # their replies may be lost: none may wait for them
                await asyncio.sleep(RETRY_S)

    async def _listen(self) -> None:
        async with self._subscriber.pubsub() as pubsub:
            await pubsub.subscribe(self.inbox(self.replica))
            self.listening.set()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=None)
                if message is None or message["type"] != "message":
                    continue
                try:
                    self._dispatch(orjson.loads(message["data"]))
                except (ProtocolError, KeyError, TypeError, ValueError) as exc:
                    log.warning("cross-replica inbox: a bad message (%s)", exc)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["t"] == "re":
            self._reply(message)
        else:
            self._request(message["o"], message["w"], message["f"])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for stream in list(self._serving.values()):
            with contextlib.suppress(Exception):
                await stream.close()
