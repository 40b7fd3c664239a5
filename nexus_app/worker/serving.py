"""One served model: turns a job of the worker protocol into engine work and result frames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nexus_app.config import FlashAttention
from nexus_app.protocol import (
    MAX_EMBEDDING_INPUTS,
    Chunk,
    Done,
    Error,
    FinishReason,
    Job,
    ModelCard,
    TokenLogprob,
    Usage,
)
from nexus_app.worker.engine import Engine
from nexus_app.worker.events import Embedded, Failed, Finished, Started, Stream, Text
from nexus_app.worker.llamacpp import Model
from nexus_app.worker.models import LocalModel
from nexus_app.worker.prompt_tokens import PromptTokenizer
from nexus_app.worker.prompts import ChatPrompt, ChatTemplate
from nexus_app.worker.sampling import RequestError, Sampling
from nexus_app.worker.tool_calls import Output, ToolCallReader

Send = Callable[[Chunk | Done | Error], Awaitable[None]]


class ModelServer:
    """A loaded model with its engine; `serve` runs one job to its last frame."""

    def __init__(self, local: LocalModel, *, slots: int, context_per_slot: int, threads: int,
                 gpu_layers: int, on_fault: Callable[[str], None] | None = None,
                 prefix_similarity: float = 0.5, flash_attention: FlashAttention = "auto"
                 ) -> None:
        self.local = local
        self.model = Model(local.path, gpu_layers)
        self.engine = Engine(self.model, slots=slots, context_per_slot=context_per_slot,
                             threads=threads, on_fault=on_fault,
                             prefix_similarity=prefix_similarity,
                             flash_attention=flash_attention)
        self.template = ChatTemplate(local.chat_template, self.model.bos_text,
                                     self.model.eos_text)
        self.chat_tokens = PromptTokenizer(self.model)
        self.streams: dict[str, Stream] = {}

    @property
    def card(self) -> ModelCard:
        card = self.local.card(self.engine.context_per_slot)
        return card.model_copy(update={"parameters": card.parameters or self.model.n_params,
                                       "embeddings": True})

    def close(self) -> None:
        self.engine.close()
        self.model.close()

    def cancel(self, job_id: str) -> bool:
        stream = self.streams.get(job_id)
        if stream is not None:
            stream.cancel()
        return stream is not None

    async def serve(self, job: Job, send: Send) -> None:
        """Run a job, sending its chunks and a final `done` or `error` frame."""
        deadline = time.monotonic() + max(0.0, job.deadline - time.time())
        try:
            if job.kind == "embeddings":
                inputs = await asyncio.to_thread(self._embedding_inputs, job.request)
                stream, chat = self.engine.embed(inputs), None
            else:
                prompt, sampling, chat = await asyncio.to_thread(self._prepare, job)
                stream = self.engine.generate(prompt, sampling, deadline)
        except RequestError as exc:
            await send(Error(job_id=job.job_id, code="invalid_request", message=str(exc)))
            return
        self.streams[job.job_id] = stream
        try:
            await self._relay(job.job_id, stream, chat, send)
        finally:
            stream.cancel()  # a no-op when it finished; stops generation if sending failed
            del self.streams[job.job_id]

    def _prepare(self, job: Job) -> tuple[list[int], Sampling, ChatPrompt | None]:
        """Prompt tokens, sampling and (for chat) the rendered prompt of a job (off the loop)."""
        request = job.request
        if job.kind == "chat":
            chat = self.template.prompt(request)
            tokens = self.chat_tokens.tokenize(chat.text)
            return tokens, Sampling.from_request(request, chat.grammar), chat
        prompt = request.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string")
        tokens = self.model.tokenize(prompt, add_special=True, parse_special=True)
        return tokens, Sampling.from_request(request), None

    def _embedding_inputs(self, request: dict[str, Any]) -> list[list[int]]:
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (not isinstance(inputs, list) or not 0 < len(inputs) <= MAX_EMBEDDING_INPUTS
                or not all(isinstance(text, str) and text for text in inputs)):
            raise RequestError(
                f"'input' must be a non-empty string or 1 to {MAX_EMBEDDING_INPUTS} of them")
        return [self.model.tokenize(text, add_special=True, parse_special=False)
                for text in inputs]

    async def _relay(self, job_id: str, stream: Stream, chat: ChatPrompt | None,
                     send: Send) -> None:
        reader = ToolCallReader(chat.one_call) if chat and chat.tools != "none" else None

        async def forward(out: Output, logprobs: tuple[TokenLogprob, ...]) -> None:
            if out.text or out.tool_calls or logprobs:
                await send(Chunk(job_id=job_id, text=out.text, tool_calls=out.tool_calls or None,
                                 logprobs=list(logprobs) or None))

        async for event in stream:
            if isinstance(event, Text):
                out = reader.feed(event.text) if reader else Output(text=event.text)
                await forward(out, event.logprobs)
            elif isinstance(event, Started):
                await send(Chunk(job_id=job_id))  # an empty chunk: the job has started
            elif isinstance(event, Finished):
                reason: FinishReason = event.reason
                if reader is not None:
                    await forward(reader.finish(), ())
                    if reader.calls and reason == "stop":
                        reason = "tool_calls"
                usage = Usage(prompt_tokens=event.prompt_tokens,
                              completion_tokens=event.completion_tokens,
                              cached_tokens=event.cached_tokens)
                await send(Done(job_id=job_id, finish_reason=reason,
                                usage=usage))
            elif isinstance(event, Embedded):
                await send(Done(job_id=job_id, usage=Usage(prompt_tokens=event.prompt_tokens),
                                embeddings=event.vectors))
            elif isinstance(event, Failed):
                await send(Error(job_id=job_id, code=event.code, message=event.message))
