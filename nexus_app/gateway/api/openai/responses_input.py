"""From a Responses API request to the equivalent Chat Completions request.

Input items map onto chat messages: a message keeps its role (typed content parts become
chat parts), consecutive `function_call` items become one assistant message with
`tool_calls`, and a `function_call_output` becomes a `tool` message. Tools, `tool_choice`
and `text.format` are translated to their chat shapes, so the worker sees one kind of job.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from nexus_app.gateway.api.openai.schemas import (
    ChatCompletionRequest,
    ResponseAllowedToolsChoice,
    ResponsesRequest,
)
from nexus_app.gateway.errors import BadRequest, invalid_body

_ROLES = {"user", "assistant", "system", "developer"}
_TEXT_PARTS = {"input_text", "output_text", "text"}


def chat_request(body: ResponsesRequest,
                 previous: list[dict[str, Any]] | None = None) -> ChatCompletionRequest:
    """The chat request that runs `body` after the `previous` messages of a stored response
    it continues (a 400 naming the item that cannot be mapped)."""
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    messages += previous or []
    if isinstance(body.input, str):
        messages.append({"role": "user", "content": body.input})
    else:
        for index, item in enumerate(body.input):
            append_item(messages, item, f"input.{index}")
    chat: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "parallel_tool_calls": body.parallel_tool_calls,
        "tool_choice": _tool_choice(body),
        "response_format": _response_format(body),
    }
    if body.tools:
        chat["tools"] = [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
            for tool in body.tools
        ]
    try:
        return ChatCompletionRequest.model_validate(chat)
    except ValidationError as exc:
        raise invalid_body(exc.errors()) from None


def append_item(messages: list[dict[str, Any]], item: dict[str, Any], param: str) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        messages.append(_message(item, param))
    elif kind == "function_call":
        call = {"id": _text_field(item, "call_id", param), "type": "function",
                "function": {"name": _text_field(item, "name", param),
                             "arguments": _text_field(item, "arguments", param)}}
        last = messages[-1] if messages else None
        if last and last["role"] == "assistant" and last.get("tool_calls") is not None:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        content = output if isinstance(output, str) else _parts(output, f"{param}.output")
        messages.append({"role": "tool", "tool_call_id": _text_field(item, "call_id", param),
                         "content": content})
    else:
        raise BadRequest(f"Input items of type '{kind}' are not supported; send messages, "
                         "function_call and function_call_output items.", param=param)


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise BadRequest(f"A message's role must be one of {sorted(_ROLES)}.",
                         param=f"{param}.role")
    content = item.get("content")
    if not isinstance(content, str):
        content = _parts(content, f"{param}.content")
    return {"role": role, "content": content}


def _parts(parts: Any, param: str) -> list[dict[str, Any]]:
    """Typed content parts as chat parts: text kept, images as `image_url` (the chat
    handler refuses them for text-only models), anything else refused."""
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise BadRequest("Content must be a string or a list of typed parts.", param=param)
    converted: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        kind = part.get("type")
        if kind in _TEXT_PARTS or kind == "refusal":
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise BadRequest("A text part needs a 'text' string.", param=f"{param}.{index}")
            converted.append({"type": "text", "text": text})
        elif kind == "input_image":
            converted.append({"type": "image_url",
                              "image_url": {"url": part.get("image_url") or part.get("file_id")}})
        else:
            raise BadRequest(f"Content parts of type '{kind}' are not supported.",
                             param=f"{param}.{index}")
    return converted


def _text_field(item: dict[str, Any], name: str, param: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or (not value and name != "arguments"):
        raise BadRequest(f"This item needs a '{name}' string.", param=f"{param}.{name}")
    return value


def _tool_choice(body: ResponsesRequest) -> str | dict[str, Any] | None:
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    if isinstance(choice, ResponseAllowedToolsChoice):
        return {"type": "allowed_tools", "allowed_tools": {
            "mode": choice.mode,
            "tools": [{"type": "function", "function": {"name": tool.name}}
                      for tool in choice.tools]}}
    return {"type": "function", "function": {"name": choice.name}}


def _response_format(body: ResponsesRequest) -> dict[str, Any] | None:
    text_format = body.text.format if body.text else None
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return {"type": "json_object"}
    if text_format.json_schema is None:
        raise BadRequest("A json_schema format needs a 'schema'.", param="text.format.schema")
    return {"type": "json_schema", "json_schema": {
        "name": text_format.name or "response", "schema": text_format.json_schema,
        "strict": text_format.strict}}
