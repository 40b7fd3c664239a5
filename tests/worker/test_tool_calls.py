"""Tool calls read out of a streaming reply: names first, arguments as they are written."""

from __future__ import annotations

import json
from typing import Any

from nexus_app.gateway.api.openai.chat_job import merge_tool_calls
from nexus_app.worker.tool_calls import ToolCallReader

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris \\"Ville\\"", ' \
       '"days": [1, 2]}}\n</tool_call>'


def read(pieces: list[str], one_call: bool = False) -> tuple[str, list[list[dict[str, Any]]]]:
    """Feed `pieces` one by one; the text let out and the tool-call deltas of each step."""
    reader = ToolCallReader(one_call)
    text, steps = "", []
    for piece in [*pieces, None]:
        out = reader.feed(piece) if piece is not None else reader.finish()
        text += out.text
        if out.tool_calls:
            steps.append(out.tool_calls)
    return text, steps


def merged(steps: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for deltas in steps:
        merge_tool_calls(calls, deltas)
    return [calls[i] for i in sorted(calls)]


def test_a_call_written_token_by_token_streams_its_arguments() -> None:
    text, steps = read(list(CALL))
    assert text == ""
    first = steps[0][0]
    assert first["id"].startswith("call_") and first["function"]["name"] == "get_weather"
    assert len(steps) > 10  # the arguments arrive piece by piece, not in one chunk
    [call] = merged(steps)
    assert json.loads(call["function"]["arguments"]) == {"city": 'Paris "Ville"', "days": [1, 2]}


def test_plain_text_passes_through_and_whitespace_before_a_call_is_not_text() -> None:
    assert read(["The weather", " is fine."]) == ("The weather is fine.", [])
    assert read(["<", "tool", "s are fun"]) == ("<tools are fun", [])
    text, steps = read(["  \n", CALL])
    assert text == "" and merged(steps)[0]["function"]["name"] == "get_weather"


def test_a_call_cut_off_by_the_token_limit_is_still_a_partial_call() -> None:
    _, steps = read([CALL[:70]])
    [call] = merged(steps)
    assert call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"].startswith('{"city": "Paris')
    _, steps = read(['<tool_call>\n{"name": "get_weather"'])
    assert merged(steps)[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert read(["<tool_call>\n{"]) == ("", [])  # no name yet: nothing to report


def test_parallel_calls_get_indexes_and_one_call_keeps_only_the_first() -> None:
    two = CALL + "\n" + CALL.replace("get_weather", "get_time")
    calls = merged(read(list(two))[1])
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [c["function"]["name"] for c in merged(read([two], one_call=True)[1])] == [
        "get_weather"]


def test_keys_in_another_order_are_parsed_whole_at_the_end() -> None:
    reply = '<tool_call>\n{"arguments": {"city": "Oslo"}, "name": "get_weather"}\n</tool_call>'
    text, steps = read(list(reply))
    assert text == "" and len(steps) == 1
    [call] = merged(steps)
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert read(["<tool_call>not json"]) == ("<tool_call>not json", [])
