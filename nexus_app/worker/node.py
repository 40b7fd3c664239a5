"""The worker node: connects to a gateway, proves its wallet, serves jobs, reconnects.

Usable headless (`nexus-app --worker`) and as a library (the TUI starts and stops it in its
own event loop): `await node.start()` loads the models, `run()` keeps the link up until
`stop()` drains the jobs in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace

import websockets
from solders.keypair import Keypair

from nexus_app import __version__
from nexus_app.chain.wallet import sign
from nexus_app.config import Settings
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Challenge,
    Chunk,
    Done,
    Earnings,
    Error,
    Hardware,
    Hello,
    Job,
    ProtocolError,
    Ready,
    Status,
    encode,
    parse_gateway_frame,
    worker_auth_message,
    worker_url,
)
from nexus_app.worker.hardware import GpuProbe, hardware
from nexus_app.worker.llamacpp import gpu_offload_supported
from nexus_app.worker.models import LocalModel
from nexus_app.worker.serving import ModelServer
from nexus_app.worker.status import NodeStatus

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.5
HANDSHAKE_TIMEOUT_S = 15.0


def backoff_delay(attempt: int, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [d/2, d], d = 0.5 s * 2^attempt."""
    delay = min(cap, FIRST_RETRY_S * 2 ** min(attempt, 16))
    return random.uniform(delay / 2, delay)


class WorkerNode:
    """Serves local models to one gateway over the worker protocol."""

    def __init__(self, settings: Settings, models: list[LocalModel], keypair: Keypair,
                 on_status: Callable[[NodeStatus], None] | None = None) -> None:
        self.settings = settings
        self.local_models = models
        self.keypair = keypair
        self.threads = settings.threads or os.cpu_count() or 1
        self.on_status = on_status
        self.servers: dict[str, ModelServer] = {}
        self.status = NodeStatus(gateway_url=settings.gateway_url)
        self._probe: GpuProbe | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._ws: websockets.ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._failed: list[ModelServer] = []  # models whose engine stopped on a fault
        self._closing: set[asyncio.Task[None]] = set()
        self._rate_mark = (time.monotonic(), 0)

    @property
    def wallet(self) -> str:
        return str(self.keypair.pubkey())

    @property
    def capacity(self) -> int:
        """Jobs this node takes at once: the slots of every model it serves."""
        return self.settings.slots * len(self.servers)

    @property
    def out_of_service(self) -> bool:
        """Every model's engine stopped on a fault: the node has nothing left to serve."""
        return bool(self._failed) and not self.servers

    @property
    def tokens_generated(self) -> int:
        return sum(server.engine.tokens_generated for server in self.servers.values())

    def _update(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        if self.on_status is not None:
            self.on_status(self.status)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Probe the hardware and load every model (in a thread: loading takes seconds)."""
        self._probe = GpuProbe()
        loop = asyncio.get_running_loop()
        for local in self.local_models:
            def on_fault(fault: str, model_id: str = local.id) -> None:
                loop.call_soon_threadsafe(self._engine_failed, model_id, fault)

            server = await asyncio.to_thread(
                ModelServer, local, slots=self.settings.slots,
                context_per_slot=self.settings.context_per_slot, threads=self.threads,
                gpu_layers=self.settings.gpu_layers, on_fault=on_fault,
                prefix_similarity=self.settings.slot_prompt_similarity,
                flash_attention=self.settings.flash_attention,
            )
            self.servers[local.id] = server
            where = (f"{server.model.gpu_layers} layers on the GPU" if server.model.gpu_layers
                     else "CPU only")
            log.info("model %s loaded from %s (%s, %d threads, %d slots)", local.id,
                     local.path, where, self.threads, self.settings.slots)
        record = self._hardware()
        log.info("hardware: %s%s", record.accelerator,
                 f" ({record.note})" if record.note else "")
        self._update(state="connecting", accelerator=record.accelerator)

    async def run(self) -> None:
        """Stay connected (reconnecting with backoff) until `stop()`."""
        attempt = 0
        url = worker_url(self.settings.gateway_url)
        while not self._stopping.is_set():
            try:
                async with websockets.connect(
                    url, max_size=self.settings.max_frame_bytes, open_timeout=10,
                    ping_interval=20, ping_timeout=20,
                ) as ws:
                    self._ws = ws
                    await self._handshake(ws)
                    attempt = 0
                    await self._serve_frames(ws)
            except (OSError, websockets.WebSocketException, TimeoutError, ProtocolError) as exc:
                self._update(last_error=f"{type(exc).__name__}: {exc}"[:200])
            finally:
                self._ws = None
                self._cancel_jobs()
            if self._stopping.is_set():
                break
            delay = backoff_delay(attempt, self.settings.reconnect_max_s)
            attempt += 1
            log.info("gateway %s: %s; retrying in %.1f s", self.settings.gateway_url,
                     self.status.last_error or "unreachable", delay)
            self._update(state="connecting", worker_id=None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        self._update(state="stopped", worker_id=None)

    async def stop(self) -> None:
        """Take no new jobs, let those in flight finish (bounded), then disconnect."""
        if self._stopping.is_set():
            return
        self._update(state="draining")
        ws = self._ws
        if ws is not None and self._jobs:
            log.info("draining %d job(s)", len(self._jobs))
            with contextlib.suppress(websockets.WebSocketException):
                await ws.send(encode(self._status_frame()))
            await asyncio.wait(list(self._jobs.values()), timeout=self.settings.drain_timeout_s)
        self._stopping.set()
        if ws is not None:
            await ws.close(1001, "worker stopping")

    def close(self) -> None:
        """Free the models (after `run()` returned)."""
        for server in [*self.servers.values(), *self._failed]:
            server.close()
        self.servers.clear()
        self._failed.clear()
        if self._probe is not None:
            self._probe.close()

    def _engine_failed(self, model_id: str, fault: str) -> None:
        """A model's engine stopped: offer the others on a new connection, or stop if none
        is left — never stay online for a model that cannot serve."""
        server = self.servers.pop(model_id, None)
        if server is None:
            return
        self._failed.append(server)
        reason = f"the engine of {model_id} stopped ({fault})"
        log.error("%s; %s", reason, "reconnecting without it" if self.servers else "stopping")
        self._update(last_error=reason)
        if not self.servers:
            self._stopping.set()
        if self._ws is not None:
            closing = asyncio.create_task(self._ws.close(1011, reason[:120]))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    # --- one connection -------------------------------------------------------------------

    async def _handshake(self, ws: websockets.ClientConnection) -> None:
        """Answer the challenge with a signed hello; raises ProtocolError if not accepted."""
        challenge = parse_gateway_frame(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
        if not isinstance(challenge, Challenge):
            raise ProtocolError("the gateway did not open with a challenge")
        await ws.send(encode(self._hello(challenge.nonce)))
        ready = parse_gateway_frame(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT_S))
        if not isinstance(ready, Ready):
            raise ProtocolError("the gateway did not accept the hello")
        log.info("online at %s as %s (wallet %s)", self.settings.gateway_url, ready.worker_id,
                 self.wallet)
        self._update(state="online", worker_id=ready.worker_id, last_error="")

    async def _serve_frames(self, ws: websockets.ClientConnection) -> None:
        """Take jobs and report status until the connection ends."""
        reporter = asyncio.create_task(self._report_status(ws))
        try:
            async for text in ws:
                self._on_frame(ws, parse_gateway_frame(text))
        except ProtocolError as exc:
            log.error("closing: %s", exc)
            await ws.close(1008, str(exc)[:120])
        except websockets.ConnectionClosed:
            pass
        finally:
            reporter.cancel()
        if not self._stopping.is_set():
            reason = ws.close_reason or "connection lost"
            log.warning("disconnected from the gateway: %s", reason)
            self._update(last_error=reason)

    def _hello(self, nonce: str) -> Hello:
        return Hello(
            protocol=PROTOCOL_VERSION, wallet=self.wallet,
            signature=sign(self.keypair, worker_auth_message(nonce)),
            models=[server.card for server in self.servers.values()],
            hardware=self._hardware(), slots=self.capacity,
            version=f"nexus-app {__version__}",
        )

    def _on_frame(self, ws: websockets.ClientConnection, frame: object) -> None:
        if isinstance(frame, Job):
            self._jobs[frame.job_id] = asyncio.create_task(self._serve(ws, frame))
            self._update(jobs_active=len(self._jobs))
        elif isinstance(frame, Cancel):
            for server in self.servers.values():
                server.cancel(frame.job_id)
        elif isinstance(frame, Earnings):
            if (frame.earned, frame.paid) != (self.status.earned, self.status.paid):
                log.info("earnings: %d earned, %d paid (base units)", frame.earned, frame.paid)
            self._update(earned=frame.earned, paid=frame.paid)

    async def _serve(self, ws: websockets.ClientConnection, job: Job) -> None:
        async def send(frame: Chunk | Done | Error) -> None:
            await ws.send(encode(frame))

        try:
            server = self.servers.get(job.model)
            if self._stopping.is_set() or self.status.state == "draining":
                await send(Error(job_id=job.job_id, code="worker_stopping",
                                 message="the worker is stopping"))
            elif server is None:
                await send(Error(job_id=job.job_id, code="model_not_found",
                                 message=f"this worker does not serve '{job.model}'"))
            else:
                await server.serve(job, send)
        except websockets.ConnectionClosed:
            pass  # the gateway refunds and retries; nothing to deliver to
        except Exception:  # a fault in one job must not take the node down
            log.exception("job %s failed", job.job_id)
            with contextlib.suppress(websockets.WebSocketException):
                await send(Error(job_id=job.job_id, code="worker_error",
                                 message="the worker failed"))
        finally:
            self._jobs.pop(job.job_id, None)
            self._update(jobs_active=len(self._jobs), jobs_served=self.status.jobs_served + 1,
                         tokens_generated=self.tokens_generated)

    def _cancel_jobs(self) -> None:
        for task in self._jobs.values():
            task.cancel()
        self._jobs.clear()
        self._update(jobs_active=0)

    # --- status ---------------------------------------------------------------------------

    def _hardware(self) -> Hardware:
        assert self._probe is not None
        return hardware(self._probe, gpu_offload_supported(), self.threads)

    def _status_frame(self) -> Status:
        """Load, live hardware and tokens/s since the last frame; no slots while draining."""
        now, tokens = time.monotonic(), self.tokens_generated
        then, before = self._rate_mark
        self._rate_mark = (now, tokens)
        rate = (tokens - before) / (now - then) if now > then else 0.0
        self._update(tokens_per_s=rate, tokens_generated=tokens)
        slots = 0 if self.status.state == "draining" else self.capacity
        return Status(active=len(self._jobs), slots=slots, hardware=self._hardware(),
                      tokens_per_s=round(rate, 2))

    async def _report_status(self, ws: websockets.ClientConnection) -> None:
        with contextlib.suppress(websockets.WebSocketException):
            while True:
                await asyncio.sleep(self.settings.status_interval_s)
                await ws.send(encode(self._status_frame()))
