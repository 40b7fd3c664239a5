"""`POST /v1/completions` (legacy text completions, non-streaming and SSE) and
`POST /v1/embeddings`, billed like chat."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from nexus_app.gateway.api.deps import api_key_caller, gateway_of
from nexus_app.gateway.api.openai.chat_job import finish_reason
from nexus_app.gateway.api.openai.logprobs import completion_logprobs, logprobs_of
from nexus_app.gateway.api.openai.relay import (
    END_OF_STREAM,
    collect,
    error_event,
    event_stream,
    usage_body,
)
from nexus_app.gateway.api.openai.schemas import CompletionRequest, EmbeddingRequest
from nexus_app.gateway.errors import ApiError, BadRequest
from nexus_app.gateway.http.errors import parse_body
from nexus_app.gateway.http.openapi import json_post_route
from nexus_app.gateway.http.sse import sse_data
from nexus_app.ids import new_id
from nexus_app.protocol import MAX_EMBEDDING_INPUTS, Chunk, Done, TokenLogprob

SPECIAL_TOKENS = 2  # BOS and EOS a tokenizer may add around each text


def _text_bound(text: str) -> int:
    """An upper bound on a text's tokens: every token is at least one UTF-8 byte."""
    return len(text.encode()) + SPECIAL_TOKENS


class CompletionShapes:
    """Builds the OpenAI `text_completion` objects of one completion (and its chunks)."""

    def __init__(self, model: str, include_usage: bool, echo: str,
                 logprobs: int | None = None) -> None:
        self.id = new_id("cmpl").replace("_", "-", 1)
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.echo = echo
        self.logprobs = logprobs  # alternatives per token, None when not asked
        self._offset = len(echo)  # where the next chunk's text starts

    def _logprobs(self, tokens: list[TokenLogprob], offset: int) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        return completion_logprobs(tokens, self.logprobs, offset)

    def _envelope(self, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "system_fingerprint": None, "choices": choices,
                "usage": usage}

    def _chunk(self, text: str, reason: str | None = None,
               logprobs: dict[str, Any] | None = None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}
        body = self._envelope([choice], None)
        if not self.include_usage:
            del body["usage"]
        return sse_data(orjson.dumps(body))

    def opening(self) -> bytes | None:
        return self._chunk(self.echo) if self.echo else None

    def chunk(self, event: Chunk) -> bytes | None:
        logprobs = self._logprobs(event.logprobs or [], self._offset)
        self._offset += len(event.text)
        return self._chunk(event.text, None, logprobs) if event.text or logprobs else None

    def closing(self, done: Done, usage: dict[str, int]) -> bytes:
        last = self._chunk("", finish_reason(done, False))
        if self.include_usage:
            last += sse_data(orjson.dumps(self._envelope([], usage)))
        return last + END_OF_STREAM

    def failure(self, error: ApiError) -> bytes:
        return error_event(error)

    def completion(self, chunks: list[Chunk], done: Done, usage: dict[str, int]
                   ) -> dict[str, Any]:
        """The whole `text_completion` of a collected job."""
        text = "".join(chunk.text for chunk in chunks)
        choice = {"text": self.echo + text, "index": 0,
                  "logprobs": self._logprobs(logprobs_of(chunks), len(self.echo)),
                  "finish_reason": finish_reason(done, False)}
        return self._envelope([choice], usage)


def _one_prompt(body: CompletionRequest) -> str:
    if body.suffix is not None:
        raise BadRequest("'suffix' is not supported.", param="suffix")
    if body.echo and body.logprobs is not None:
        raise BadRequest("'logprobs' with 'echo' is not supported: the prompt's tokens are "
                         "not scored.", param="logprobs")
    if isinstance(body.prompt, str):
        return body.prompt
    if len(body.prompt) != 1:
        raise BadRequest("Send one prompt per request.", param="prompt")
    return body.prompt[0]


async def completions(request: Request) -> Response:
    """Create a text completion of a prompt (set `stream` for Server-Sent Events)."""
    gateway = gateway_of(request)
    caller = await api_key_caller(request)
    body = await parse_body(request, CompletionRequest)
    prompt = _one_prompt(body)
    card = gateway.model_card(body.model)
    max_tokens = body.max_tokens or 16
    if card is not None:
        max_tokens = min(max_tokens, card.context_length)
    job = {"prompt": prompt, "max_tokens": max_tokens, "stop": body.stop_list(),
           "logprobs": body.logprobs, **body.sampling()}
    ticket = await gateway.open_ticket(
        caller, "completion", body.model, {k: v for k, v in job.items() if v is not None},
        _text_bound(prompt), max_tokens,
    )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    shapes = CompletionShapes(body.model, include_usage, prompt if body.echo else "",
                              body.logprobs)
    if body.stream:
        return await event_stream(gateway, ticket, shapes)
    chunks, done = await collect(gateway, ticket, request.receive)
    out = shapes.completion(chunks, done, usage_body(ticket))
    return Response(orjson.dumps(out), media_type="application/json")


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """OpenAI's base64 encoding: the little-endian float32 array."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def embeddings(request: Request) -> Response:
    """Create embedding vectors of one text or a list of texts."""
    gateway = gateway_of(request)
    caller = await api_key_caller(request)
    body = await parse_body(request, EmbeddingRequest)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not 0 < len(texts) <= MAX_EMBEDDING_INPUTS or not all(texts):
        raise BadRequest(f"'input' must be a non-empty text or 1 to {MAX_EMBEDDING_INPUTS} "
                         "non-empty texts.", param="input")
    if body.dimensions is not None:
        raise BadRequest("'dimensions' is not supported: vectors have the model's own size.",
                         param="dimensions")
    card = gateway.model_card(body.model)
    if card is not None and not card.embeddings:
        raise BadRequest(f"The model '{body.model}' does not serve embeddings.", param="model",
                         code="model_not_supported")
    ticket = await gateway.open_ticket(caller, "embeddings", body.model, {"input": texts},
                                       sum(_text_bound(text) for text in texts), 0)
    _, done = await collect(gateway, ticket, request.receive)
    vectors = done.embeddings or []  # one per text: checked before the job was settled
    usage = usage_body(ticket)
    out = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": body.model,
        "usage": {"prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["prompt_tokens"]},
    }
    return Response(orjson.dumps(out), media_type="application/json")


routes = [
    json_post_route("/v1/completions", completions, CompletionRequest, "inference"),
    json_post_route("/v1/embeddings", embeddings, EmbeddingRequest, "inference"),
]
