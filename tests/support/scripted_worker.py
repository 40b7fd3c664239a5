"""A scripted test worker: a TEST DOUBLE of the worker node.

It speaks the real worker protocol (signed hello, job, chunk, done, cancel) over a real
WebSocket, but answers every job with a scripted reply instead of running a model, so that
gateway tests and benchmarks do not depend on model speed. Run it alone with
`python -m tests.support.scripted_worker --gateway URL`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Challenge,
    Chunk,
    Done,
    Earnings,
    Error,
    Hello,
    Job,
    ModelCard,
    Ready,
    Status,
    TokenLogprob,
    Usage,
    encode,
    parse_gateway_frame,
    worker_auth_message,
    worker_url,
)

DEFAULT_REPLY = "Hello from the scripted worker, one word at a time."
FLOOD_CHUNK_CHARS = 64 * 1024  # the text of each chunk a flooding worker sends
MALFORMED_TOOL_CALL = {"index": "first", "function": "not an object"}


@dataclass
class ScriptedWorker:
    gateway_url: str
    models: list[str] = field(default_factory=lambda: ["scripted-model"])
    reply: str = DEFAULT_REPLY
    tool_calls: list[dict[str, Any]] | None = None  # the answer to jobs that offer tools
    token_delay_s: float = 0.0
    first_token_delay_s: float = 0.0
    starts: bool = False  # send an empty chunk first, as a worker does when it takes a job
    slots: int = 4
    context_length: int = 4096
    prompt_tokens: int = 11
    cached_tokens: int = 0  # of the prompt tokens, those it says it found in its cache
    keypair: Keypair = field(default_factory=Keypair)
    # misbehaviour, for reliability tests
    fail_with: str | None = None  # answer every job with this error code
    claimed_tokens: int | None = None  # report this many completion tokens, whatever was sent
    ignore_cancel: bool = False  # keep sending after the gateway cancels a job
    logprobs_per_token: int = 0  # attach this many log probabilities to each text chunk
    # hostile workers, for tests/security/test_worker_output_attacks.py
    flood_bytes: int = 0  # answer with this much text, whatever max_tokens says
    ignore_max_tokens: bool = False  # send the whole reply past max_tokens
    wrong_vector_count: bool = False  # answer embeddings with one vector fewer than inputs
    malformed_tool_call: bool = False  # answer jobs with a tool call that is not one
    unasked_tool_calls: bool = False  # send `tool_calls` also to jobs that offer no tools
    frame_flood: int = 0  # on each job, first send this many status frames at once
    embedding_dimensions: int = 8
    clock: bool = False  # each chunk's text is the time it was sent (bench: relay latency)
    serves_embeddings: bool = False  # its model cards say it serves embeddings
    # observations
    jobs: list[Job] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    tokens_sent: dict[str, int] = field(default_factory=dict)
    earned: int = 0
    worker_id: str | None = None
    close_reason: str | None = None

    def __post_init__(self) -> None:
        self._ws: websockets.ClientConnection | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def wallet(self) -> str:
        return str(self.keypair.pubkey())

    @property
    def ws_url(self) -> str:
        return worker_url(self.gateway_url)

    async def start(self) -> ScriptedWorker:
        self._ws = await websockets.connect(self.ws_url, max_size=None)
        self._loop_task = asyncio.create_task(self._run(self._ws))
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task

    def hello(self, nonce: str) -> Hello:
        cards = [ModelCard(id=m, file=f"{m}.gguf", context_length=self.context_length,
                           embeddings=self.serves_embeddings) for m in self.models]
        return Hello(
            protocol=PROTOCOL_VERSION, wallet=self.wallet,
            signature=sign(self.keypair, worker_auth_message(nonce)),
            models=cards, slots=self.slots, version="scripted",
        )

    async def _run(self, ws: websockets.ClientConnection) -> None:
        try:
            async for text in ws:
                frame = parse_gateway_frame(text)
                if isinstance(frame, Challenge):
                    await ws.send(encode(self.hello(frame.nonce)))
                elif isinstance(frame, Ready):
                    self.worker_id = frame.worker_id
                    self._ready.set()
                elif isinstance(frame, Job):
                    self.jobs.append(frame)
                    self._tasks[frame.job_id] = asyncio.create_task(self._serve(ws, frame))
                elif isinstance(frame, Cancel):
                    self.cancelled.add(frame.job_id)
                    task = self._tasks.get(frame.job_id)
                    if task is not None and not self.ignore_cancel:
                        task.cancel()
                elif isinstance(frame, Earnings):
                    self.earned = frame.earned
        except websockets.ConnectionClosed as closed:
            self.close_reason = closed.rcvd.reason if closed.rcvd else None

    def tokens(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    async def _serve(self, ws: websockets.ClientConnection, job: Job) -> None:
        if self.fail_with is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self.send_error(job.job_id, self.fail_with)
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(self.frame_flood):
                await ws.send(encode(Status(slots=self.slots)))
            if job.kind == "embeddings":
                await self._embed(ws, job)
            elif self.flood_bytes or self.malformed_tool_call:
                await self._misbehave(ws, job)
            else:
                await self._generate(ws, job)

    async def _embed(self, ws: websockets.ClientConnection, job: Job) -> None:
        inputs = job.request.get("input") or []
        count = len(inputs) - 1 if self.wrong_vector_count else len(inputs)
        vectors = [[0.5] * self.embedding_dimensions for _ in range(count)]
        await ws.send(encode(Done(job_id=job.job_id, embeddings=vectors,
                                  usage=Usage(prompt_tokens=self.prompt_tokens))))

    async def _misbehave(self, ws: websockets.ClientConnection, job: Job) -> None:
        """A flood of text past max_tokens, or a tool call that is not one; then a done."""
        if self.malformed_tool_call:
            await ws.send(encode(Chunk(job_id=job.job_id, tool_calls=[MALFORMED_TOOL_CALL])))
        text, sent = "x" * FLOOD_CHUNK_CHARS, 0
        while sent < self.flood_bytes:
            await ws.send(encode(Chunk(job_id=job.job_id, text=text)))
            sent += len(text)
            self.tokens_sent[job.job_id] = sent
        usage = Usage(prompt_tokens=self.prompt_tokens, completion_tokens=1)
        await ws.send(encode(Done(job_id=job.job_id, usage=usage)))

    async def _generate(self, ws: websockets.ClientConnection, job: Job) -> None:
        limit = int(job.request.get("max_tokens", 1 << 30))
        if self.ignore_max_tokens:
            limit = 1 << 30
        sent, finish = 0, "stop"
        try:
            if self.starts:
                await ws.send(encode(Chunk(job_id=job.job_id)))
            if self.first_token_delay_s:
                await asyncio.sleep(self.first_token_delay_s)
            if self.tool_calls and (job.request.get("tools") or self.unasked_tool_calls):
                await ws.send(encode(Chunk(job_id=job.job_id, tool_calls=self.tool_calls)))
                sent, finish = 1, "tool_calls"
            for token in self.tokens() if finish == "stop" else ():
                if sent >= limit:
                    finish = "length"
                    break
                logprobs = [TokenLogprob(token=token, logprob=-0.5, bytes=list(token.encode()))
                            ] * self.logprobs_per_token if self.logprobs_per_token else []
                text = f"{time.time():.6f} " if self.clock else token
                await ws.send(encode(Chunk(job_id=job.job_id, text=text,
                                           logprobs=logprobs or None)))
                sent += 1
                self.tokens_sent[job.job_id] = sent
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
        except asyncio.CancelledError:
            finish = "cancelled"
        usage = Usage(prompt_tokens=self.prompt_tokens, cached_tokens=self.cached_tokens,
                      completion_tokens=sent if self.claimed_tokens is None
                      else self.claimed_tokens)
        await ws.send(encode(Done(job_id=job.job_id, finish_reason=finish, usage=usage)))

    async def send_error(self, job_id: str, code: str) -> None:
        assert self._ws is not None
        await self._ws.send(encode(Error(job_id=job_id, code=code, message="scripted failure")))


async def _main() -> None:
    parser = argparse.ArgumentParser(description="Scripted test worker (no model).")
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--model", action="append")
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--clock", action="store_true",
                        help="send the time each chunk is sent as its text")
    parser.add_argument("--reconnect", action="store_true",
                        help="connect again (same wallet) whenever the connection ends")
    hostile = parser.add_argument_group("hostile behaviour (security tests)")
    hostile.add_argument("--flood-bytes", type=int, default=0,
                         help="answer with this much text, whatever max_tokens says")
    hostile.add_argument("--ignore-max-tokens", action="store_true")
    hostile.add_argument("--wrong-vector-count", action="store_true")
    hostile.add_argument("--malformed-tool-call", action="store_true")
    hostile.add_argument("--unasked-tool-calls", action="store_true",
                         help="send a tool call also to jobs that offer no tools")
    hostile.add_argument("--frame-flood", type=int, default=0,
                         help="on each job, first send this many status frames at once")
    args = parser.parse_args()
    worker = ScriptedWorker(args.gateway, models=args.model or ["scripted-model"],
                            slots=args.slots, token_delay_s=args.token_delay,
                            first_token_delay_s=args.first_token_delay, reply=args.reply,
                            clock=args.clock,
                            flood_bytes=args.flood_bytes, ignore_max_tokens=args.ignore_max_tokens,
                            wrong_vector_count=args.wrong_vector_count,
                            malformed_tool_call=args.malformed_tool_call,
                            frame_flood=args.frame_flood,
                            unasked_tool_calls=args.unasked_tool_calls,
                            tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "f", "arguments": "{}"}}]
                            if args.unasked_tool_calls else None)
    while True:
        try:
            await worker.start()
        except (OSError, TimeoutError, websockets.WebSocketException):
            if not args.reconnect:
                raise
            await asyncio.sleep(0.2)
            continue
        print(f"scripted worker {worker.worker_id} ready", flush=True)
        assert worker._loop_task is not None
        await worker._loop_task
        if not args.reconnect:
            return
        worker = dataclasses.replace(worker, jobs=[], cancelled=set(), tokens_sent={})


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
