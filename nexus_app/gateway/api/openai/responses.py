"""`POST /v1/responses`: the OpenAI Responses API, non-streaming and with its named SSE
event lifecycle (`response.created` ... `response.completed`).

A turn runs as a chat job (see `responses_input`); its text becomes a `message` output item
and its tool calls become `function_call` items. With `store: true` the finished turn is
sealed under the caller's API key and a later turn may continue it with
`previous_response_id` (see `responses_stored`); without it nothing is kept. Conversations
objects are not kept: a request naming one (`conversation`) is a 400, as OpenAI answers for
an id it does not know.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from nexus_app.gateway.api.deps import api_key_caller, gateway_of
from nexus_app.gateway.api.openai import responses_stored as stored
from nexus_app.gateway.api.openai.chat_job import open_chat, tool_calls_of
from nexus_app.gateway.api.openai.relay import collect, event_stream, usage_body
from nexus_app.gateway.api.openai.responses_input import chat_request
from nexus_app.gateway.api.openai.schemas import ResponsesRequest
from nexus_app.gateway.errors import ApiError, BadRequest
from nexus_app.gateway.http.errors import parse_body
from nexus_app.gateway.http.openapi import json_post_route
from nexus_app.ids import new_id
from nexus_app.protocol import Chunk, Done


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    return {"input_tokens": usage["prompt_tokens"],
            "input_tokens_details": usage["prompt_tokens_details"],
            "output_tokens": usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"]}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponseShapes:
    """The response object of one turn, its output items and its stream events."""

    def __init__(self, body: ResponsesRequest) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.body = body
        self.output: list[dict[str, Any]] = []
        self._sequence = 0
        self._message: dict[str, Any] | None = None  # the message item being streamed
        self._text: list[str] = []  # its text so far
        self._calls: dict[int, dict[str, Any]] = {}  # tool calls by index, as streamed
        self.final: dict[str, Any] | None = None  # the response object, once finished

    # the response object ---------------------------------------------------------------------

    def response(self, status: str, usage: dict[str, int] | None = None,
                  error: ApiError | None = None) -> dict[str, Any]:
        body = self.body
        text_format = body.text.format if body.text and body.text.format else None
        choice = body.tool_choice
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status,
            "error": {"code": error.code, "message": error.message} if error else None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "model": body.model,
            "output": self.output,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": bool(body.store),
            "temperature": body.temperature if body.temperature is not None else 1.0,
            "text": {"format": text_format.model_dump(by_alias=True, exclude_none=True)
                     if text_format else {"type": "text"}},
            "tool_choice": choice.model_dump() if choice and not isinstance(choice, str)
            else choice or "auto",
            "tools": [tool.model_dump(exclude_none=True) for tool in body.tools or []],
            "top_p": body.top_p if body.top_p is not None else 1.0,
            "truncation": "disabled",
            "usage": _usage(usage) if usage else None,
            "user": body.user,
            "metadata": body.metadata or {},
        }

    def finished(self, chunks: list[Chunk], done: Done, usage: dict[str, int]) -> dict[str, Any]:
        """The whole response of a non-streamed turn."""
        calls = tool_calls_of(chunks)
        text = "".join(chunk.text for chunk in chunks)
        status = _status(done)
        if text or not calls:
            self.output.append({"type": "message", "id": new_id("msg"), "status": status,
                                "role": "assistant", "content": [_text_part(text)]})
        self.output.extend(_function_call(call, "completed") for call in calls)
        return self.response(status, usage)

    # stream events (the relay's StreamShapes) ------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        self._sequence += 1
        data = orjson.dumps({"type": kind, "sequence_number": self._sequence, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def opening(self) -> bytes:
        return (self._event("response.created", response=self.response("in_progress"))
                + self._event("response.in_progress", response=self.response("in_progress")))

    def chunk(self, event: Chunk) -> bytes | None:
        out = b""
        if event.text:
            out += self._text_delta(event.text)
        if event.tool_calls:
            out += self._close_message("completed")
            for delta in event.tool_calls:
                out += self._call_delta(delta)
        return out or None

    def _added(self, item: dict[str, Any]) -> bytes:
        self.output.append(item)
        return self._event("response.output_item.added", output_index=len(self.output) - 1,
                           item=item)

    def _part_at(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": message["id"], "output_index": self.output.index(message),
                "content_index": 0}

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self._message is None:
            self._message = {"type": "message", "id": new_id("msg"), "status": "in_progress",
                             "role": "assistant", "content": []}
            self._text = []
            out += self._added(self._message)
            out += self._event("response.content_part.added", **self._part_at(self._message),
                               part=_text_part(""))
        self._text.append(text)
        return out + self._event("response.output_text.delta", **self._part_at(self._message),
                                 delta=text, logprobs=[])

    def _close_message(self, status: str) -> bytes:
        message, self._message = self._message, None
        if message is None:
            return b""
        text = "".join(self._text)
        part = _text_part(text)
        at = self._part_at(message)
        message.update(status=status, content=[part])
        return (self._event("response.output_text.done", **at, text=text, logprobs=[])
                + self._event("response.content_part.done", **at, part=part)
                + self._event("response.output_item.done", output_index=at["output_index"],
                              item=message))

    def _call_delta(self, delta: dict[str, Any]) -> bytes:
        index = int(delta.get("index", 0))
        function = delta.get("function") or {}
        out = b""
        if index not in self._calls:
            call = {"id": delta.get("id") or new_id("call"),
                    "function": {"name": function.get("name") or "", "arguments": ""}}
            self._calls[index] = _function_call(call, "in_progress")
            out += self._added(self._calls[index])
        item = self._calls[index]
        fragment = function.get("arguments") or ""
        item["arguments"] += fragment
        if fragment:
            out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=self.output.index(item), delta=fragment)
        return out

    def closing(self, done: Done, usage: dict[str, int]) -> bytes:
        status = _status(done)
        out = self._close_message(status)
        for item in self._calls.values():
            item["status"] = "completed"
            index = self.output.index(item)
            out += self._event("response.function_call_arguments.done", item_id=item["id"],
                               output_index=index, name=item["name"],
                               arguments=item["arguments"])
            out += self._event("response.output_item.done", output_index=index, item=item)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self.final = self.response(status, usage)
        return out + self._event(kind, response=self.final)

    def failure(self, error: ApiError) -> bytes:
        self._close_message("incomplete")
        return self._event("response.failed", response=self.response("failed", error=error))


def _status(done: Done) -> str:
    return "incomplete" if done.finish_reason == "length" else "completed"


def _function_call(call: dict[str, Any], status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": new_id("fc"), "call_id": call["id"],
            "name": call["function"]["name"], "arguments": call["function"]["arguments"],
            "status": status}


def refuse_conversation(body: ResponsesRequest) -> None:
    """A 400 for a request that continues a conversation object: none is kept, and running
    the turn without the earlier ones would answer something else."""
    if body.conversation is not None:
        conversation = body.conversation
        name = conversation if isinstance(conversation, str) else conversation.id
        raise BadRequest(f"Conversation with id '{name}' not found. Conversations are not "
                         "stored: send the earlier turns as input items.",
                         param="conversation", code="conversation_not_found")


async def responses(request: Request) -> Response:
    """Create a model response (set `stream` for the named Server-Sent Events)."""
    gateway = gateway_of(request)
    caller = await api_key_caller(request)
    body = await parse_body(request, ResponsesRequest)
    refuse_conversation(body)
    await stored.check_room(gateway, caller, body)
    chat = chat_request(body, await stored.previous_context(gateway, caller, body))
    ticket = await open_chat(gateway, caller, chat)
    shapes = ResponseShapes(body)
    if body.stream:
        response = await event_stream(gateway, ticket, shapes)
        if body.store:
            response.events = stored.saving(
                response.events, lambda: shapes.final,
                lambda final: stored.save(gateway, caller, body, chat, final))
        return response
    chunks, done = await collect(gateway, ticket, request.receive)
    out = shapes.finished(chunks, done, usage_body(ticket))
    await stored.save(gateway, caller, body, chat, out)
    return Response(orjson.dumps(out), media_type="application/json")


routes = [json_post_route("/v1/responses", responses, ResponsesRequest, "inference")]
