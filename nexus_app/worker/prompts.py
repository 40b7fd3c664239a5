"""From an OpenAI chat request to a prompt: the model's own chat template, tools, JSON output.

Tools follow the Hermes convention that small open models are trained on: the functions are
listed in the system prompt, and the model answers with `<tool_call>{"name", "arguments"}
</tool_call>` blocks. When the request forces a call (`tool_choice` naming a function, or
`"required"`), a grammar makes the model emit exactly one well-formed call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from nexus_app.ids import new_id
from nexus_app.worker.sampling import RequestError

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


@dataclass(frozen=True)
class ChatPrompt:
    """The rendered prompt and how to read the model's answer."""

    text: str
    grammar: str | None = None
    tools: str = "none"  # none | auto (the model may call) | forced (it must call)
    one_call: bool = False  # parallel_tool_calls is false: at most one call


class ChatTemplate:
    """A model's chat template (ChatML when the GGUF file has none)."""

    def __init__(self, template: str | None, bos: str, eos: str) -> None:
        self._formatter = Jinja2ChatFormatter(template or CHATML, eos_token=eos, bos_token=bos)

    def prompt(self, request: dict[str, Any]) -> ChatPrompt:
        messages = [_plain_message(m) for m in request.get("messages") or []]
        if not messages:
            raise RequestError("'messages' must hold at least one message")
        tools = _functions(request.get("tools"))
        choice = request.get("tool_choice", "auto" if tools else "none")
        forced = _forced_function(choice, tools)
        mode = "none" if not tools or choice == "none" else ("forced" if forced else "auto")
        one_call = request.get("parallel_tool_calls") is False
        if mode != "none":
            messages = _with_tool_preamble(messages, tools, one_call)
        grammar = _call_grammar(forced) if forced else _format_grammar(request)
        try:
            text = self._formatter(messages=messages).prompt  # type: ignore[arg-type]
        except (TemplateError, ValueError, TypeError) as exc:
            raise RequestError(f"the model's chat template rejected the messages: {exc}") from None
        return ChatPrompt(text, grammar, mode, one_call)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    raise RequestError("message content must be a string or a list of parts")


def _plain_message(message: Any) -> dict[str, str]:
    """A message as the chat template expects it: a role and text content."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RequestError("each message needs a 'role'")
    role = "system" if message["role"] == "developer" else message["role"]
    content = _text(message.get("content"))
    if role == "assistant" and message.get("tool_calls"):
        calls = [_call_text(call) for call in message["tool_calls"]]
        content = "\n".join([content, *calls] if content else calls)
    elif role == "tool":
        content = f"<tool_response>\n{content}\n</tool_response>"
    return {"role": role, "content": content}


def _call_text(call: Any) -> str:
    function = call.get("function") or {} if isinstance(call, dict) else {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        arguments = function.get("arguments")
    body = json.dumps({"name": function.get("name", ""), "arguments": arguments})
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def _functions(tools: Any) -> list[dict[str, Any]]:
    if not tools:
        return []
    if not isinstance(tools, list):
        raise RequestError("'tools' must be a list")
    functions = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError("each tool needs a function with a name")
        functions.append(function)
    return functions


def _forced_function(choice: Any, tools: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The functions the model must choose from, when the request forces a call."""
    if choice == "required":
        return tools or None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        match = [f for f in tools if f["name"] == name]
        if not match:
            raise RequestError(f"tool_choice names '{name}', which is not in 'tools'")
        return match
    if choice not in ("auto", "none"):
        raise RequestError("'tool_choice' must be 'auto', 'none', 'required' or a function")
    return None


def _with_tool_preamble(messages: list[dict[str, str]], tools: list[dict[str, Any]],
                        one_call: bool) -> list[dict[str, str]]:
    listing = "\n".join(json.dumps({"type": "function", "function": f}) for f in tools)
    preamble = (
        "You may call functions to answer. The functions are listed within <tools></tools>:\n"
        f"<tools>\n{listing}\n</tools>\n"
        "To call a function, answer with a JSON object with the function's name and its "
        'arguments within <tool_call></tool_call> tags:\n<tool_call>\n{"name": <function-name>, '
        '"arguments": <args-json-object>}\n</tool_call>'
        + ("\nCall at most one function." if one_call else "")
    )
    if messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{preamble}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": preamble}, *messages]


# A character inside a JSON string: anything but a quote, a backslash or a control character,
# or an escape. The converter's own rule lets raw newlines and control characters through,
# which `json.loads` rejects; `dot` (a pattern's `.`) gets the same bounds.
_STRING_CHAR_RULES = {
    "char": r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" '
            r'[0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])',
    "dot": r'dot ::= [^"\\\x7F\x00-\x1F]',
}
_RULE_LINE = re.compile(r"^(char|dot) ::= .*$", re.M)
NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}


def _schema_grammar(schema: dict[str, Any], order: list[str] | None = None) -> str:
    """The GBNF grammar of JSON text matching `schema`, strings limited to valid JSON."""
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema), prop_order=order)
    except Exception as exc:  # the converter raises assorted errors on schemas it cannot do
        raise RequestError(f"unsupported JSON schema: {exc}") from None
    return _RULE_LINE.sub(lambda rule: _STRING_CHAR_RULES[rule.group(1)], grammar)


def _call_grammar(functions: list[dict[str, Any]]) -> str:
    """A grammar for `<tool_call>` + one call of one of `functions` + `</tool_call>`."""
    options = [
        {"type": "object",
         "properties": {"name": {"const": f["name"]},
                        "arguments": f.get("parameters") or NO_ARGUMENTS},
         "required": ["name", "arguments"]}
        for f in functions
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    call = _schema_grammar(schema, ["name", "arguments"]).replace("root ::=", "call ::=", 1)
    return f'root ::= "{TOOL_CALL_OPEN}\\n" call "\\n{TOOL_CALL_CLOSE}"\n{call}'


def _format_grammar(request: dict[str, Any]) -> str | None:
    """A grammar for `response_format`: any JSON object, or one matching a schema."""
    response_format = request.get("response_format") or {}
    kind = response_format.get("type", "text")
    if kind == "json_object":
        return JSON_GBNF
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise RequestError("response_format json_schema needs a 'schema' object")
        return _schema_grammar(schema)
    if kind != "text":
        raise RequestError(f"unsupported response_format type '{kind}'")
    return None


def parse_tool_calls(text: str) -> list[dict[str, Any]] | None:
    """The OpenAI `tool_calls` in a reply made of `<tool_call>` blocks, or None if it is not."""
    stripped = text.strip()
    if not stripped.startswith(TOOL_CALL_OPEN):
        return None
    calls = []
    for index, body in enumerate(_TOOL_CALL_BLOCK.findall(stripped)):
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        arguments = call.get("arguments", {})
        calls.append({
            "index": index, "id": new_id("call"), "type": "function",
            "function": {"name": call["name"],
                         "arguments": arguments if isinstance(arguments, str)
                         else json.dumps(arguments)},
        })
    return calls or None
