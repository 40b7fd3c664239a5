"""`POST /v1/chat/completions`: OpenAI Chat Completions, non-streaming and SSE streaming."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from nexus_app.gateway.api.deps import api_key_caller, gateway_of
from nexus_app.gateway.api.openai.chat_job import finish_reason, open_chat, tool_calls_of
from nexus_app.gateway.api.openai.logprobs import chat_logprobs, logprobs_of
from nexus_app.gateway.api.openai.relay import (
    END_OF_STREAM,
    collect,
    error_event,
    event_stream,
    usage_body,
)
from nexus_app.gateway.api.openai.schemas import ChatCompletionRequest
from nexus_app.gateway.errors import ApiError
from nexus_app.gateway.http.errors import parse_body
from nexus_app.gateway.http.openapi import json_post_route
from nexus_app.gateway.http.sse import sse_data
from nexus_app.ids import new_id
from nexus_app.protocol import Chunk, Done, TokenLogprob, has_output


class ChatShapes:
    """Builds the OpenAI response objects of one chat completion (and its stream chunks)."""

    def __init__(self, model: str, include_usage: bool = False, logprobs: int | None = None
                 ) -> None:
        self.id = new_id("chatcmpl").replace("_", "-", 1)
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.logprobs = logprobs  # alternatives per token, None when not asked
        self.tool_calls = False
        self._opened = False  # the first delta (with the role) was sent

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None, with_usage: bool = False
               ) -> bytes:
        body: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": None, "choices": choices,
        }
        if with_usage:
            body["usage"] = usage
        return sse_data(orjson.dumps(body))

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: dict[str, Any] | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs,
                  "finish_reason": finish_reason}
        return self._chunk([choice], None, self.include_usage)

    def opening(self) -> bytes | None:
        return None  # the role goes with the first delta, once it is known to be text or calls

    def _first(self, content: str | None) -> dict[str, Any]:
        self._opened = True
        return {"role": "assistant", "content": content}

    def chunk(self, event: Chunk) -> bytes | None:
        if not has_output(event):
            return None  # the job's start: the response's headers are out, nothing to add
        delta: dict[str, Any] = {} if self._opened else self._first(
            None if event.tool_calls and not event.text else "")
        if event.text:
            delta["content"] = event.text
        if event.tool_calls:
            delta["tool_calls"] = event.tool_calls
            self.tool_calls = True
        logprobs = self._logprobs(event.logprobs or [])
        return self.delta(delta, logprobs=logprobs) if delta or logprobs else None

    def _logprobs(self, tokens: list[TokenLogprob]) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        return chat_logprobs(tokens, self.logprobs)

    def closing(self, done: Done, usage: dict[str, int]) -> bytes:
        first = b"" if self._opened else self.delta(self._first(""))
        last = first + self.delta({}, finish_reason(done, self.tool_calls))
        if self.include_usage:
            last += self._chunk([], usage, True)
        return last + END_OF_STREAM

    def failure(self, error: ApiError) -> bytes:
        return error_event(error)

    def completion(self, chunks: list[Chunk], done: Done, usage: dict[str, int]
                   ) -> dict[str, Any]:
        """The whole `chat.completion` of a collected job."""
        tool_calls = tool_calls_of(chunks)
        text = "".join(chunk.text for chunk in chunks)
        message: dict[str, Any] = {"role": "assistant",
                                   "content": text if text or not tool_calls else None,
                                   "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": message,
                         "logprobs": self._logprobs(logprobs_of(chunks)),
                         "finish_reason": finish_reason(done, bool(tool_calls))}],
            "usage": usage,
        }


async def chat_completions(request: Request) -> Response:
    """Create a chat completion (set `stream` for Server-Sent Events)."""
    gateway = gateway_of(request)
    caller = await api_key_caller(request)
    body = await parse_body(request, ChatCompletionRequest)
    ticket = await open_chat(gateway, caller, body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    shapes = ChatShapes(body.model, include_usage, body.logprobs_asked())
    if body.stream:
        return await event_stream(gateway, ticket, shapes)
    chunks, done = await collect(gateway, ticket, request.receive)
    body_out = shapes.completion(chunks, done, usage_body(ticket))
    return Response(orjson.dumps(body_out), media_type="application/json")


routes = [
    json_post_route("/v1/chat/completions", chat_completions, ChatCompletionRequest, "inference"),
]
