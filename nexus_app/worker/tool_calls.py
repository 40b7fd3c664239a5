"""Reading tool calls out of a reply while it streams.

A reply that may call tools is either plain text, or `<tool_call>` blocks (the Hermes
convention, see `prompts`). The reader passes plain text through and turns each block into
OpenAI tool-call deltas as the model writes it: the call's id and name as soon as the name is
complete, then its arguments piece by piece — so a client sees arguments stream, and a call
cut off by `max_tokens` is still a (partial) tool call, never raw `<tool_call>` text.
A block the reader cannot follow (the model wrote the keys in another order) is held and
parsed whole at the end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nexus_app.ids import new_id
from nexus_app.worker.prompts import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_tool_calls

_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.){1,256})"\s*,\s*"arguments"\s*:\s*')
_NAME = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
HEADER_MAX = 400  # characters after `<tool_call>` within which the header must be complete


@dataclass
class Output:
    """What the reader lets out for one piece of the reply."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class ToolCallReader:
    """Feeds on the reply's text; `feed` and `finish` return what can be sent now."""

    def __init__(self, one_call: bool = False) -> None:
        self.one_call = one_call
        self.calls = 0  # tool calls started
        # start | text | header | arguments | between | after | done | whole
        self._state = "start"
        self._buffer = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._value_started = False

    def feed(self, text: str) -> Output:
        out = Output()
        self._buffer += text
        while self._buffer and self._step(out):
            pass
        return out

    def finish(self) -> Output:
        """The end of the reply: whatever is held that still means something."""
        out = Output()
        rest, self._buffer = self._buffer, ""
        if self._state in ("start", "text"):
            out.text = rest
        elif self._state == "header":
            name = _NAME.match(rest)
            if name:  # cut off before its arguments: a call with none yet
                self._start_call(out, _unescape(name.group(1)))
        elif self._state == "whole":
            calls = parse_tool_calls(TOOL_CALL_OPEN + rest) or []
            for call in calls[: 1 if self.one_call else None]:
                call["index"] = self.calls
                self.calls += 1
                out.tool_calls.append(call)
            if not calls and not self.calls:
                out.text = TOOL_CALL_OPEN + rest
        return out

    # --- the states -------------------------------------------------------------------------

    def _step(self, out: Output) -> bool:
        """Consume what the current state can; False when it must wait for more text."""
        state = self._state
        if state == "start":
            return self._at_start()
        if state == "text":
            out.text += self._buffer
            self._buffer = ""
        elif state == "header":
            return self._at_header(out)
        elif state == "arguments":
            return self._in_arguments(out)
        elif state == "between":
            return self._between()
        elif state == "after":
            return self._after()
        elif state == "done":  # one call asked for and made: the rest is dropped
            self._buffer = ""
        return False  # whole: held until the end

    def _at_start(self) -> bool:
        stripped = self._buffer.lstrip()
        if stripped.startswith(TOOL_CALL_OPEN):
            self._buffer = stripped[len(TOOL_CALL_OPEN):]
            self._state = "header"
            return True
        if not TOOL_CALL_OPEN.startswith(stripped):
            self._state = "text"
            return True
        return False

    def _at_header(self, out: Output) -> bool:
        match = _HEADER.match(self._buffer)
        if match is None:
            if len(self._buffer) > HEADER_MAX or not _may_open_with_name(self._buffer):
                self._state = "whole"
            return False
        self._start_call(out, _unescape(match.group(1)))
        self._buffer = self._buffer[match.end():]
        self._state, self._depth, self._in_string, self._escaped = "arguments", 0, False, False
        self._value_started = False
        return True

    def _start_call(self, out: Output, name: str) -> None:
        out.tool_calls.append({"index": self.calls, "id": new_id("call"), "type": "function",
                               "function": {"name": name, "arguments": ""}})
        self.calls += 1

    def _in_arguments(self, out: Output) -> bool:
        """Pass the arguments' JSON through until its value is complete."""
        if not self._value_started:
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return False
            if self._buffer[0] != "{":
                self._state = "whole"  # not an object: left to the whole-block parser
                return False
            self._value_started = True
        for position, char in enumerate(self._buffer):
            if self._consume(char):
                self._arguments(out, self._buffer[: position + 1])
                self._buffer = self._buffer[position + 1:]
                self._state = "between"
                return True
        self._arguments(out, self._buffer)
        self._buffer = ""
        return False

    def _consume(self, char: str) -> bool:
        """Track JSON nesting; True when `char` closes the arguments value."""
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_string = False
                return self._depth == 0
            return False
        if char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            return self._depth == 0
        return False

    def _arguments(self, out: Output, text: str) -> None:
        if not text:
            return
        index = self.calls - 1
        last = out.tool_calls[-1] if out.tool_calls else None
        if last is not None and last["index"] == index:
            last["function"]["arguments"] += text
        else:
            out.tool_calls.append({"index": index, "function": {"arguments": text}})

    def _between(self) -> bool:
        """After a call's arguments: its closing, then maybe another call."""
        end = self._buffer.find(TOOL_CALL_CLOSE)
        if end < 0:
            return False
        self._buffer = self._buffer[end + len(TOOL_CALL_CLOSE):]
        if self.one_call:
            self._buffer, self._state = "", "done"
            return False
        self._state = "after"
        return True

    def _after(self) -> bool:
        """Between calls: wait for the next `<tool_call>`; other text is dropped."""
        stripped = self._buffer.lstrip()
        if stripped.startswith(TOOL_CALL_OPEN):
            self._buffer, self._state = stripped[len(TOOL_CALL_OPEN):], "header"
            return True
        if not TOOL_CALL_OPEN.startswith(stripped):
            self._buffer = ""
        return False


def _may_open_with_name(text: str) -> bool:
    """Whether `text` can still become `{"name": ...` (the order the reader follows)."""
    text = text.lstrip()
    if not text:
        return True
    if text[0] != "{":
        return False
    rest = text[1:].lstrip()
    return rest.startswith('"name"') or '"name"'.startswith(rest)


def _unescape(name: str) -> str:
    return name.replace('\\"', '"').replace("\\\\", "\\")
