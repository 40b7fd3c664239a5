"""One model's inference engine: continuous batching over llama.cpp sequences.

A dedicated thread owns the llama.cpp context. Each step it decodes one batch that holds the
next token of every generating sequence plus as much of the waiting prompts as fits, then
samples each sequence with its own sampler chain — the llama.cpp server's parallel slots.
Results reach the event loop once a step (`events.Outbox`); the loop never waits on model
computation. Cancellation and deadlines are checked before every step, so generation
stops within a token.

A request that fails (a sampler llama.cpp refuses, a bug in one sequence's sampling) fails
alone; the engine serves the next. Only a fault the engine cannot recover from (llama.cpp's
fatal decode status, an exception escaping the loop) stops it: every queued request fails,
later ones fail at once, and `on_fault` tells the owner, which stops offering the model.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from nexus_app.config import FlashAttention
from nexus_app.protocol import TokenLogprob
from nexus_app.worker.events import (
    STARTED,
    Embedded,
    EngineStop,
    Event,
    Failed,
    Finished,
    Outbox,
    Stream,
    Text,
)
from nexus_app.worker.llamacpp import Batch, Context, LlamaError, LlamaFatal, Model
from nexus_app.worker.logprobs import token_logprob
from nexus_app.worker.sampling import RequestError, Sampling, free_chain
from nexus_app.worker.slots import Slots

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Sequence:
    """A generation in progress in one KV-cache sequence."""

    stream: Stream
    prompt: list[int]
    sampling: Sampling
    deadline: float
    max_tokens: int = 0
    seq_id: int = -1
    chain: Any = None
    fed: int = 0  # prompt tokens already in the KV cache
    reused: int = 0  # of those, the ones a previous request left in the slot's cache
    cached: list[int] = field(default_factory=list)  # every token in the sequence's cache
    next_token: int | None = None  # sampled, to be fed in the next step
    logits_at: int | None = None  # batch index of this sequence's logits
    generated: int = 0
    held: str = ""  # text that may be the start of a stop string
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of tokens not yet sent
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )

    @property
    def position(self) -> int:
        return self.fed + self.generated


@dataclass(eq=False)
class _EmbedJob:
    stream: Stream
    inputs: list[list[int]]
    vectors: list[list[float]] = field(default_factory=list)


def fill_batch(batch: Batch, sequences: list[_Sequence]) -> None:
    """Fill `batch` with the next token of every generating sequence, and as much of the
    others' prompts as fits after those; `sequences` in order of sequence id, the order they
    go into the batch. llama.cpp decodes the sequences of separate caches in one pass only in
    that order: at each break in it, it splits the batch, one more pass through the model."""
    batch.clear()
    room = batch.free - sum(s.next_token is not None for s in sequences)
    for sequence in sequences:
        sequence.logits_at = None
        if sequence.next_token is not None:
            sequence.logits_at = batch.add(sequence.next_token, sequence.position - 1,
                                           sequence.seq_id, True)
            sequence.cached.append(sequence.next_token)
            continue
        take = min(len(sequence.prompt) - sequence.fed, room)
        room -= take
        for pos in range(sequence.fed, sequence.fed + take):
            last = pos == len(sequence.prompt) - 1
            index = batch.add(sequence.prompt[pos], pos, sequence.seq_id, last)
            if last:
                sequence.logits_at = index
        sequence.cached += sequence.prompt[sequence.fed:sequence.fed + take]
        sequence.fed += take


class Engine:
    """Serves one loaded model to up to `slots` concurrent generations."""

    def __init__(self, model: Model, *, slots: int, context_per_slot: int, threads: int,
                 on_fault: Callable[[str], None] | None = None,
                 prefix_similarity: float = 0.5, flash_attention: FlashAttention = "auto") -> None:
        self.model = model
        self.on_fault = on_fault  # called (from the engine thread) if the engine stops on a fault
        self.fault: str | None = None
        self.slots = slots
        self.context_per_slot = min(context_per_slot, model.n_ctx_train)
        self.threads = threads
        self.flash_attention = flash_attention
        self.context = Context(model, n_ctx=slots * self.context_per_slot, n_seq=slots,
                               threads=threads, flash_attention=flash_attention)
        self._batch = Batch(self.context.n_batch)
        self._embed_context: Context | None = None
        self._embed_batch: Batch | None = None
        self._slots = Slots(slots, prefix_similarity)
        self._outbox = Outbox()  # what the engine thread sends to streams, once a step
        self._waiting: deque[_Sequence] = deque()
        self._active: list[_Sequence] = []  # by sequence id
        self._embeds: deque[_EmbedJob] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self.tokens_generated = 0  # all time, for status and tests
        self._thread = threading.Thread(target=self._run, name="nexus-engine", daemon=True)
        self._thread.start()

    # --- called from the event loop -------------------------------------------------------

    @property
    def busy(self) -> int:
        return len(self._active) + len(self._waiting) + len(self._embeds)

    def generate(self, prompt: list[int], sampling: Sampling, deadline: float) -> Stream:
        """Queue a generation; `deadline` is a `time.monotonic()` instant."""
        stream = Stream(asyncio.get_running_loop())
        room = self.context_per_slot - len(prompt)
        if self.fault is not None:
            stream.put(self._out_of_service())
        elif not prompt:
            stream.put(Failed("invalid_request", "the prompt is empty"))
        elif room < 1:
            stream.put(Failed("context_length_exceeded",
                              f"the prompt is {len(prompt)} tokens; this model's context on "
                              f"this worker is {self.context_per_slot}"))
        else:
            sequence = _Sequence(stream, prompt, sampling, deadline,
                                 max_tokens=min(sampling.max_tokens, room))
            self._submit(lambda: self._waiting.append(sequence))
        return stream

    def embed(self, inputs: list[list[int]]) -> Stream:
        """Queue an embeddings request: one pooled, normalised vector per input."""
        stream = Stream(asyncio.get_running_loop())
        limit = self.context_per_slot
        if self.fault is not None:
            stream.put(self._out_of_service())
        elif any(not tokens or len(tokens) > limit for tokens in inputs):
            stream.put(Failed("context_length_exceeded",
                              f"each input must be 1 to {limit} tokens"))
        else:
            self._submit(lambda: self._embeds.append(_EmbedJob(stream, inputs)))
        return stream

    def close(self) -> None:
        """Stop the thread (failing whatever is still queued) and free the model's memory."""
        self._submit(lambda: None, closing=True)
        self._thread.join()
        for resource in (self._batch, self._embed_batch, self._embed_context, self.context):
            if resource is not None:
                resource.close()

    def _submit(self, action: Callable[[], None], closing: bool = False) -> None:
        with self._wake:
            action()
            self._closing = self._closing or closing
            if self.fault is not None:  # the thread is gone: nothing queued would be served
                self._fail_all(self._out_of_service())
            self._wake.notify()

    def _out_of_service(self) -> Failed:
        return Failed("engine_failed", f"the model's engine stopped after a fault ({self.fault})")

    # --- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve_until_closed()
        except BaseException as exc:
            self.fault = type(exc).__name__
            log.critical("the engine of %s stopped: %s", self.model.name, exc, exc_info=True)
        with self._wake:
            self._fail_all(self._out_of_service() if self.fault
                           else Failed("worker_stopping", "the worker is stopping"))
        if self.fault is not None and self.on_fault is not None:
            self.on_fault(self.fault)

    def _serve_until_closed(self) -> None:
        while True:
            with self._wake:
                while not (self._waiting or self._active or self._embeds or self._closing):
                    self._wake.wait()
                if self._closing:
                    return
                self._admit()
            self._outbox.flush()  # what was admitted starts (or failed) before its prompt decodes
            try:
                self._retire_stopped()
                if self._embeds:
                    self._embed_next()
                if self._active:
                    self._step()
            except LlamaFatal:
                raise
            except Exception:  # a bug in one step fails the sequences in it, not the engine
                log.exception("engine step failed")
                for sequence in list(self._active):
                    self._finish(sequence, Failed("worker_error", "the engine failed"))
            finally:
                self._outbox.flush()

    def _fail_all(self, event: Failed) -> None:
        for sequence in [*self._active, *self._waiting]:
            self._finish(sequence, event)
        self._waiting.clear()
        for job in self._embeds:
            self._outbox.put(job.stream, event)
        self._embeds.clear()
        self._outbox.flush()

    def _admit(self) -> None:
        while self._waiting and self._slots:
            sequence = self._waiting.popleft()
            try:
                sequence.chain = sequence.sampling.chain(self.model)
            except RequestError as exc:
                self._outbox.put(sequence.stream, Failed("invalid_request", str(exc)))
                continue
            except Exception:  # one request's sampler must not stop the engine
                log.exception("could not set up sampling for a request")
                self._outbox.put(sequence.stream,
                                 Failed("worker_error", "the sampler could not be set up"))
                continue
            except BaseException:
                self._waiting.appendleft(sequence)  # to be failed with the rest
                raise
            self._take_slot(sequence)
            bisect.insort(self._active, sequence, key=lambda s: s.seq_id)
            self._outbox.put(sequence.stream, STARTED)

    def _take_slot(self, sequence: _Sequence) -> None:
        """Give `sequence` the free slot that holds most of its prompt, dropping the rest of
        that slot's cache; the prompt is then fed from where the two differ."""
        sequence.seq_id, reused = self._slots.take(sequence.prompt)
        if not self.context.keep_prefix(sequence.seq_id, reused):
            reused = 0  # a model whose cache cannot be cut (recurrent) starts over
        sequence.fed = sequence.reused = reused
        sequence.cached = sequence.prompt[:reused]

    def _retire_stopped(self) -> None:
        now = time.monotonic()
        for sequence in list(self._active):
            if sequence.stream.cancelled:
                self._finish(sequence, self._finished(sequence, "cancelled"))
            elif now > sequence.deadline:
                self._finish(sequence, Failed("deadline_exceeded", "the job's deadline passed"))

    def _step(self) -> None:
        batch = self._batch
        fill_batch(batch, self._active)
        try:
            self.context.decode(batch)
        except LlamaFatal:
            raise
        except LlamaError as exc:
            log.error("%s", exc)
            for sequence in list(self._active):
                self._finish(sequence, Failed("worker_error", "the model failed to decode"))
            return
        for sequence in list(self._active):
            if sequence.logits_at is not None:
                try:
                    self._sample(sequence)
                except Exception:  # fails this sequence alone
                    log.exception("sampling failed")
                    self._finish(sequence, Failed("worker_error", "sampling failed"))

    def _sample(self, sequence: _Sequence) -> None:
        assert sequence.logits_at is not None
        token = llama_cpp.llama_sampler_sample(sequence.chain, self.context.pointer,
                                               sequence.logits_at)
        if self.model.is_end(token):
            self._finish(sequence, self._finished(sequence, "stop"))
            return
        sequence.generated += 1
        self.tokens_generated += 1
        sequence.next_token = token
        piece = self.model.piece(token)
        if sequence.sampling.logprobs is not None:
            logits = self.context.logits(sequence.logits_at, self.model.n_vocab)
            sequence.logprobs.append(token_logprob(self.model, logits, token,
                                                   sequence.sampling.logprobs))
        text = sequence.held + sequence.decoder.decode(piece)
        if self._emit_until_stop(sequence, text):
            self._finish(sequence, self._finished(sequence, "stop", flush=False))
        elif sequence.generated >= sequence.max_tokens:
            self._finish(sequence, self._finished(sequence, "length"))

    def _emit(self, sequence: _Sequence, text: str) -> None:
        """Send text with the log probabilities of the tokens sampled since the last send."""
        self._outbox.put(sequence.stream, Text(text, tuple(sequence.logprobs)))
        sequence.logprobs.clear()

    def _emit_until_stop(self, sequence: _Sequence, text: str) -> bool:
        """Send `text` except a tail that may begin a stop string; True when a stop matched."""
        stops = sequence.sampling.stop
        hits = [i for i in (text.find(stop) for stop in stops) if i >= 0]
        if hits:
            sequence.held = ""
            if min(hits):
                self._emit(sequence, text[: min(hits)])
            return True
        keep = 0
        for stop in stops:
            for size in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:size]):
                    keep = size
                    break
        sequence.held = text[len(text) - keep:] if keep else ""
        if len(text) > keep:
            self._emit(sequence, text[: len(text) - keep])
        return False

    def _finished(self, sequence: _Sequence, reason: EngineStop, flush: bool = True) -> Finished:
        """The final event; with `flush`, first send the held text (a character whose bytes
        were cut off by the end is dropped, not sent as U+FFFD)."""
        if flush:
            sequence.decoder.reset()
            if sequence.held or sequence.logprobs:
                self._emit(sequence, sequence.held)
            sequence.held = ""
        return Finished(reason, len(sequence.prompt), sequence.generated, sequence.reused)

    def _finish(self, sequence: _Sequence, event: Event) -> None:
        self._outbox.put(sequence.stream, event)
        if sequence in self._active:
            self._active.remove(sequence)
            if isinstance(event, Finished):  # its cache is what `cached` says: kept for reuse
                self._slots.give_back(sequence.seq_id, sequence.cached)
            else:  # a failed step may have left the cache in any state
                self.context.forget(sequence.seq_id)
                self._slots.give_back(sequence.seq_id, [])
        if sequence.chain is not None:
            free_chain(sequence.chain)
            sequence.chain = None

    def _embed_next(self) -> None:
        """Embed one input of the oldest embeddings request (one per step keeps chats going)."""
        job = self._embeds[0]
        if job.stream.cancelled:
            self._embeds.popleft()
            self._outbox.put(job.stream, Failed("cancelled", "cancelled"))
            return
        if self._embed_context is None:
            self._embed_context = Context(self.model, n_ctx=self.context_per_slot, n_seq=1,
                                          threads=self.threads,
                                          n_batch=self.context_per_slot, embeddings=True,
                                          flash_attention=self.flash_attention)
            self._embed_batch = Batch(self.context_per_slot)
        context, batch = self._embed_context, self._embed_batch
        assert batch is not None
        tokens = job.inputs[len(job.vectors)]
        batch.clear()
        for pos, token in enumerate(tokens):
            batch.add(token, pos, 0, True)
        try:
            context.decode(batch)
            job.vectors.append(context.embedding(0, self.model.n_embd))
        except LlamaError as exc:
            log.error("%s", exc)
            self._embeds.popleft()
            self._outbox.put(job.stream,
                             Failed("worker_error", "the model failed to embed the input"))
            return
        finally:
            context.clear()
        if len(job.vectors) == len(job.inputs):
            self._embeds.popleft()
            self._outbox.put(job.stream, Embedded(job.vectors, sum(len(t) for t in job.inputs)))
