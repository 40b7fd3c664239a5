"""`POST /v1/chat/completions`: OpenAI Chat Completions, non-streaming and SSE streaming."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from nexus_app.gateway.auth import Caller
from nexus_app.gateway.errors import ApiError, BadRequest
from nexus_app.gateway.http.errors import parse_body
from nexus_app.gateway.logprobs import chat_logprobs, logprobs_of
from nexus_app.gateway.openapi import json_post_route
from nexus_app.gateway.relay import (
    END_OF_STREAM,
    collect,
    error_event,
    event_stream,
    usage_body,
)
from nexus_app.gateway.schemas import ChatCompletionRequest, ChatMessage
from nexus_app.gateway.service import Gateway, Ticket, gateway_of
from nexus_app.gateway.sse import sse_data
from nexus_app.gateway.tool_choice import worker_tools
from nexus_app.ids import new_id
from nexus_app.protocol import Chunk, Done, ModelCard, TokenLogprob

MESSAGE_OVERHEAD_TOKENS = 16  # role markers and separators a chat template adds per message
PROMPT_OVERHEAD_TOKENS = 64  # the template's start, generation prompt and tool preamble
IMAGE_PART_TYPES = {"image_url", "input_image", "image"}


def _text_of(message: ChatMessage, vision: bool) -> str | list[dict[str, Any]] | None:
    """A message's content for the worker: text parts joined; images refused unless the
    model is vision-capable."""
    content = message.content
    if content is None or isinstance(content, str):
        return content
    if any(part.type in IMAGE_PART_TYPES for part in content):
        if not vision:
            raise BadRequest(
                "This model accepts text only; remove the image parts from 'messages'.",
                param="messages", code="image_input_not_supported",
            )
        return [part.model_dump(exclude_none=True) for part in content]
    unknown = [part.type for part in content if part.type != "text"]
    if unknown:
        raise BadRequest(f"Unsupported content part type '{unknown[0]}'.", param="messages")
    return "".join(part.text or "" for part in content)


def prompt_bound(request: dict[str, Any]) -> int:
    """An upper bound on the prompt's tokens: every token is at least one UTF-8 byte."""
    size = PROMPT_OVERHEAD_TOKENS
    for message in request["messages"]:
        size += MESSAGE_OVERHEAD_TOKENS + len(orjson.dumps(message))
    if request.get("tools"):
        size += len(orjson.dumps(request["tools"]))
    return size


def worker_request(body: ChatCompletionRequest, card: ModelCard | None, default_max: int) -> dict[
    str, Any
]:
    """The job's request: sampling parameters and messages, no user identity."""
    vision = card.vision if card else False
    messages = []
    for message in body.messages:
        item = message.model_dump(exclude_none=True)
        item["content"] = _text_of(message, vision)
        messages.append(item)
    max_tokens = body.max_completion_tokens or body.max_tokens or default_max
    if card is not None:
        max_tokens = min(max_tokens, card.context_length)
    tools, tool_choice = worker_tools(body.tools, body.tool_choice)
    request: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "stop": body.stop_list(),
        "tool_choice": tool_choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "logprobs": body.logprobs_asked(),
        **body.sampling(),
    }
    if tools:
        request["tools"] = tools
    if body.response_format is not None:
        request["response_format"] = body.response_format.model_dump(exclude_none=True)
    return {k: v for k, v in request.items() if v is not None}


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


def merge_tool_calls(calls: dict[int, dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    """Fold streamed tool-call deltas into whole calls (arguments concatenated)."""
    for delta in deltas:
        index = int(delta.get("index", 0))
        call = calls.setdefault(index, {"id": "", "type": "function",
                                        "function": {"name": "", "arguments": ""}})
        call["id"] = delta.get("id") or call["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


def finish_reason(done: Done, tool_calls: bool) -> str:
    """OpenAI's finish reason: a reply cut off by the token limit stays `length`, even when
    it holds a (partial) tool call."""
    if done.finish_reason == "cancelled":
        return "stop"
    if done.finish_reason == "length":
        return "length"
    return "tool_calls" if tool_calls else done.finish_reason


def tool_calls_of(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """The whole tool calls of a collected job, in index order."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        merge_tool_calls(calls, chunk.tool_calls or [])
    return [calls[i] for i in sorted(calls)]


async def open_chat(gateway: Gateway, caller: Caller, body: ChatCompletionRequest) -> Ticket:
    """Reserve and queue the chat job that runs `body`."""
    job_request = worker_request(body, gateway.model_card(body.model),
                                 gateway.settings.default_max_tokens)
    return await gateway.open_ticket(
        caller, "chat", body.model, job_request, prompt_bound(job_request),
        job_request["max_tokens"],
    )


async def chat_completions(request: Request) -> Response:
    """Create a chat completion (set `stream` for Server-Sent Events)."""
    gateway = gateway_of(request)
    caller = await gateway.auth.api_key(request.scope, request.headers.get("authorization"))
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
