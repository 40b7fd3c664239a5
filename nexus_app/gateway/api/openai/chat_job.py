"""A chat job as the OpenAI endpoints share it: from a chat body to the job a worker runs,
reserved and queued (chat completions and responses), and from its reply chunks to finish
reasons and whole tool calls (all three)."""

from __future__ import annotations

from typing import Any

import orjson

from nexus_app.gateway.api.openai.schemas import ChatCompletionRequest, ChatMessage
from nexus_app.gateway.api.openai.tool_choice import worker_tools
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.http.auth import Caller
from nexus_app.gateway.service import Gateway, Ticket
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
