"""What a worker may send for one job, checked as each frame arrives: before anything is
buffered, relayed to the client or settled.

A frame that fails these checks is the worker's fault, never the caller's: the job fails, the
reservation is refunded in full, the worker earns nothing and its wallet is benched.

- Output is capped by the job's `max_tokens`: at most one chunk per token it may generate
  (and a few more for the last words of a tool-call reader), and at most
  `relay_bytes_per_token` bytes of frames per token (times 2 + top_logprobs when log
  probabilities were asked), within `relay_min_bytes` and `relay_max_bytes`. Going past
  either is an overrun, which also disconnects the worker.
- Tool calls only where the job offered tools, in OpenAI's delta shape; each delta is
  rebuilt from its known fields, so nothing else reaches the client.
- Log probabilities only when asked, and at most one per token the job may generate.
- An embeddings job sends no chunks, and one finite vector per input, all of one size.
- Nothing after the job's `done`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nexus_app.protocol import Chunk, Done, Job

CHUNK_SLACK = 8  # chunks past max_tokens: a reader's flush at the end sends one more
MAX_TOOL_CALLS = 128  # tool calls in one reply (indexes 0..127)
MAX_CALL_ID_CHARS = 128
MAX_FUNCTION_NAME_CHARS = 256
MAX_EMBEDDING_DIMENSIONS = 65_536


class Violation(Exception):
    """A frame the job does not allow. `overrun`: more output than the job may relay."""

    def __init__(self, reason: str, *, overrun: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.overrun = overrun


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """The gateway's bounds on what one job may relay (see the module docstring)."""

    bytes_per_token: int = 256
    min_bytes: int = 16 * 1024
    max_bytes: int = 16 * 1024 * 1024
    buffer_bytes: int = 1024 * 1024  # frames waiting for a client that reads slowly

    def budget(self, max_tokens: int, top_logprobs: int | None) -> int:
        """Bytes of chunk frames a job may relay."""
        per_token = self.bytes_per_token * (1 if top_logprobs is None else 2 + top_logprobs)
        return max(self.min_bytes, min(self.max_bytes, max_tokens * per_token))


class JobGuard:
    """Checks the frames of one job on one worker, counting what it has relayed so far."""

    __slots__ = ("bytes", "chunks", "finished", "inputs", "kind", "logprob_tokens",
                 "logprobs", "max_bytes", "max_chunks", "max_tokens", "tools")

    def __init__(self, job: Job, policy: RelayPolicy) -> None:
        request = job.request
        self.kind = job.kind
        self.max_tokens = _count(request.get("max_tokens"))
        top = request.get("logprobs")
        self.logprobs = top if type(top) is int else None  # alternatives asked, None: none
        self.max_chunks = self.max_tokens + CHUNK_SLACK if job.kind != "embeddings" else 0
        self.max_bytes = policy.budget(self.max_tokens, self.logprobs)
        self.tools = (job.kind == "chat" and bool(request.get("tools"))
                      and request.get("tool_choice") != "none")
        inputs = request.get("input")
        self.inputs = len(inputs) if isinstance(inputs, list) else 1
        self.bytes = self.chunks = self.logprob_tokens = 0
        self.finished = False

    def chunk(self, chunk: Chunk, size: int) -> Chunk:
        """The chunk as it may be relayed (unasked log probabilities dropped, tool calls
        rebuilt), or Violation. `size`: the frame's length as received."""
        if self.finished:
            raise Violation("it sent a chunk after the job's done")
        if self.kind == "embeddings":
            raise Violation("it sent text for an embeddings job")
        self.chunks += 1
        self.bytes += size
        if self.chunks > self.max_chunks or self.bytes > self.max_bytes:
            raise Violation(f"it sent more output than max_tokens={self.max_tokens} allows "
                            f"({self.chunks} chunks, {self.bytes} bytes)", overrun=True)
        update: dict[str, Any] = {}
        if chunk.tool_calls is not None:
            calls = chunk.tool_calls
            update["tool_calls"] = self._tool_calls(calls) if calls else None
        if chunk.logprobs:
            if self.logprobs is None:
                update["logprobs"] = None
            else:
                self.logprob_tokens += len(chunk.logprobs)
                if self.logprob_tokens > self.max_tokens:
                    raise Violation("it sent log probabilities of more tokens than it may "
                                    "generate", overrun=True)
        return chunk.model_copy(update=update) if update else chunk

    def done(self, done: Done) -> Done:
        """The job's last frame, or Violation."""
        if self.finished:
            raise Violation("it sent a second done")
        self.finished = True
        if self.kind == "embeddings":
            self._check_vectors(done.embeddings)
        elif done.embeddings is not None:
            raise Violation("it sent vectors for a job that is not embeddings")
        return done

    def _tool_calls(self, deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.tools:
            raise Violation("it sent tool calls, and the job offered no tools")
        if len(deltas) > MAX_TOOL_CALLS:
            raise Violation("it sent too many tool calls")
        return [_tool_call(delta) for delta in deltas]

    def _check_vectors(self, vectors: list[list[float]] | None) -> None:
        count = len(vectors) if vectors is not None else 0
        if vectors is None or count != self.inputs:
            raise Violation(f"it returned {count} embedding vectors for {self.inputs} inputs")
        size = len(vectors[0])
        if not 0 < size <= MAX_EMBEDDING_DIMENSIONS:
            raise Violation(f"it returned embedding vectors of {size} dimensions")
        for vector in vectors:
            # a sum is finite only when every value is (and none is absurdly large)
            if len(vector) != size or not math.isfinite(sum(vector)):
                raise Violation("it returned embedding vectors of different sizes or with "
                                "values that are not finite numbers")


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def _tool_call(delta: Any) -> dict[str, Any]:
    """One tool-call delta rebuilt from the fields OpenAI's shape has, or Violation."""
    if not isinstance(delta, dict):
        raise Violation("it sent a malformed tool call")
    index = delta.get("index", 0)
    if type(index) is not int or not 0 <= index < MAX_TOOL_CALLS:
        raise Violation("it sent a tool call with an invalid index")
    call: dict[str, Any] = {"index": index}
    call_id = delta.get("id")
    if call_id is not None:
        call["id"] = _text(call_id, MAX_CALL_ID_CHARS, "id")
    kind = delta.get("type")
    if kind is not None:
        if kind != "function":
            raise Violation("it sent a tool call of a type other than function")
        call["type"] = kind
    function = delta.get("function")
    if function is not None:
        if not isinstance(function, dict):
            raise Violation("it sent a malformed tool call function")
        call["function"] = {key: _text(function[key], limit, key) for key, limit in
                            (("name", MAX_FUNCTION_NAME_CHARS), ("arguments", None))
                            if function.get(key) is not None}
    return call


def _text(value: Any, limit: int | None, field: str) -> str:
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        raise Violation(f"it sent a tool call with an invalid {field}")
    return value
