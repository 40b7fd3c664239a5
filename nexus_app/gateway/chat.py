"""`POST /v1/chat/completions`: OpenAI Chat Completions, non-streaming and SSE streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from nexus_app.gateway.errors import ApiError, BadRequest, parse_body
from nexus_app.gateway.openapi import json_post_route
from nexus_app.gateway.schemas import ChatCompletionRequest, ChatMessage
from nexus_app.gateway.service import Gateway, Ticket
from nexus_app.gateway.sse import EventStreamResponse, sse_data
from nexus_app.ids import new_id
from nexus_app.protocol import Chunk, Done, ModelCard

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
    request: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "stop": body.stop_list(),
    }
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed",
                 "tool_choice", "parallel_tool_calls"):
        value = getattr(body, name)
        if value is not None:
            request[name] = value
    if body.tools:
        request["tools"] = [tool.model_dump(exclude_none=True) for tool in body.tools]
    if body.response_format is not None:
        request["response_format"] = body.response_format.model_dump(exclude_none=True)
    return {k: v for k, v in request.items() if v is not None}


class ChatShapes:
    """Builds the OpenAI response objects of one completion."""

    def __init__(self, model: str) -> None:
        self.id = new_id("chatcmpl").replace("_", "-", 1)
        self.created = int(time.time())
        self.model = model

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
              with_usage: bool = False) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._chunk([choice], None, with_usage)

    def usage_chunk(self, usage: dict[str, int]) -> bytes:
        return self._chunk([], usage, True)

    def completion(self, content: str | None, tool_calls: list[dict[str, Any]],
                   finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": usage,
        }


def usage_body(ticket: Ticket) -> dict[str, int]:
    billed = ticket.billed
    prompt, completion = (billed.prompt_tokens, billed.completion_tokens) if billed else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


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
    if done.finish_reason == "cancelled":
        return "stop"
    return "tool_calls" if tool_calls else done.finish_reason


async def chat_completions(request: Request) -> Response:
    """Create a chat completion (set `stream` for Server-Sent Events)."""
    gateway: Gateway = request.app.state.gateway
    caller = await gateway.auth.api_key(request.scope, request.headers.get("authorization"))
    body = await parse_body(request, ChatCompletionRequest)
    card = gateway.model_card(body.model)
    job_request = worker_request(body, card, gateway.settings.default_max_tokens)
    ticket = await gateway.open_ticket(
        caller, "chat", body.model, job_request, prompt_bound(job_request),
        job_request["max_tokens"],
    )
    shapes = ChatShapes(body.model)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(gateway, ticket, shapes, include_usage)
    done: Done | None = None
    try:
        content: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        async for event in ticket.stream:
            if isinstance(event, Chunk):
                content.append(event.text)
                merge_tool_calls(calls, event.tool_calls or [])
            else:
                done = event
    finally:
        await gateway.close_ticket(ticket, done)
    assert done is not None
    tool_calls = [calls[i] for i in sorted(calls)]
    body_out = shapes.completion(
        "".join(content) if content or not tool_calls else None,
        tool_calls, finish_reason(done, bool(tool_calls)), usage_body(ticket),
    )
    return Response(orjson.dumps(body_out), media_type="application/json")


async def _stream(gateway: Gateway, ticket: Ticket, shapes: ChatShapes, include_usage: bool
                  ) -> EventStreamResponse:
    """Wait for the first event (so that errors before it keep their HTTP status), then
    relay the rest as Server-Sent Events."""
    try:
        first = await anext(ticket.stream)
    except BaseException:
        await gateway.close_ticket(ticket, None)
        raise

    async def events() -> AsyncIterator[bytes]:
        tool_calls = False
        yield shapes.delta({"role": "assistant", "content": ""}, with_usage=include_usage)
        event = first
        try:
            while isinstance(event, Chunk):
                delta: dict[str, Any] = {}
                if event.text:
                    delta["content"] = event.text
                if event.tool_calls:
                    delta["tool_calls"] = event.tool_calls
                    tool_calls = True
                if delta:
                    yield shapes.delta(delta, with_usage=include_usage)
                event = await anext(ticket.stream)
        except ApiError as error:
            yield sse_data(orjson.dumps(error.body()))
            return
        # shielded: a client leaving now must not interrupt the settlement
        await asyncio.shield(gateway.close_ticket(ticket, event))
        yield shapes.delta({}, finish_reason(event, tool_calls), with_usage=include_usage)
        if include_usage:
            yield shapes.usage_chunk(usage_body(ticket))
        yield sse_data(b"[DONE]")

    async def on_close() -> None:
        await gateway.close_ticket(ticket, None)  # a no-op when the stream ended normally

    return EventStreamResponse(events(), on_close)


routes = [
    json_post_route("/v1/chat/completions", chat_completions, ChatCompletionRequest, "inference"),
]
