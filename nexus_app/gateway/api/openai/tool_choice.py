"""A chat request's `tools` and `tool_choice` as the worker takes them.

The worker protocol knows the choices `none`, `auto`, `required` and a named function. An
`allowed_tools` choice is translated here: the worker gets only the allowed tools, with
`auto` or `required` as the choice, so workers need not know that shape. Every function a
choice names must be one of `tools` (a 400 otherwise, before anything is reserved).
"""

from __future__ import annotations

from typing import Any

from nexus_app.gateway.api.openai.schemas import ChatFunctionChoice, ChatToolChoice, Tool
from nexus_app.gateway.errors import BadRequest


def worker_tools(tools: list[Tool] | None, choice: ChatToolChoice | None
                 ) -> tuple[list[dict[str, Any]] | None, str | dict[str, Any] | None]:
    """(the tools to offer the model, the worker's `tool_choice`)."""
    offered = [tool.model_dump(exclude_none=True) for tool in tools or []]
    if choice is None or isinstance(choice, str):
        return offered or None, choice
    names = {tool.function.name for tool in tools or []}
    if isinstance(choice, ChatFunctionChoice):
        _must_be_offered(choice.function.name, names)
        return offered or None, choice.model_dump()
    allowed = {tool.function.name for tool in choice.allowed_tools.tools}
    for name in sorted(allowed):
        _must_be_offered(name, names)
    return ([tool for tool in offered if tool["function"]["name"] in allowed],
            choice.allowed_tools.mode)


def _must_be_offered(name: str, names: set[str]) -> None:
    if name not in names:
        raise BadRequest(f"'tool_choice' names the function '{name}', which is not in 'tools'.",
                         param="tool_choice", code="invalid_tool_choice")
