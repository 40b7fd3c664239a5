"""Chat prompts (the model's template, tools, JSON output) and sampling parameters: pure units."""

from __future__ import annotations

import json

import pytest

from nexus_app.worker.models import bundled_model_path, describe
from nexus_app.worker.prompts import ChatTemplate, parse_tool_calls
from nexus_app.worker.sampling import RequestError, Sampling

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}


@pytest.fixture(scope="module")
def template() -> ChatTemplate:
    path = bundled_model_path()
    assert path is not None
    return ChatTemplate(describe(path).chat_template, "<|im_start|>", "<|im_end|>")


def test_the_models_own_template_renders_the_conversation(template: ChatTemplate) -> None:
    prompt = template.prompt({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text",
                                                                      "text": "lo"}]},
    ]})
    assert prompt.text == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    assert (prompt.grammar, prompt.tools) == (None, "none")


def test_without_a_template_chatml_is_used() -> None:
    prompt = ChatTemplate(None, "", "").prompt({"messages": [{"role": "user", "content": "x"}]})
    assert prompt.text == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"


def test_tools_are_listed_and_a_named_choice_forces_a_call(template: ChatTemplate) -> None:
    auto = template.prompt({"messages": [{"role": "user", "content": "Paris?"}],
                            "tools": [WEATHER]})
    assert auto.tools == "auto" and auto.grammar is None
    assert '"name": "get_weather"' in auto.text and "<tool_call>" in auto.text
    forced = template.prompt({"messages": [{"role": "user", "content": "Paris?"}],
                              "tools": [WEATHER],
                              "tool_choice": {"type": "function",
                                              "function": {"name": "get_weather"}}})
    assert forced.tools == "forced"
    assert forced.grammar is not None and '\\"get_weather\\"' in forced.grammar
    none = template.prompt({"messages": [{"role": "user", "content": "Paris?"}],
                            "tools": [WEATHER], "tool_choice": "none"})
    assert none.tools == "none" and "get_weather" not in none.text
    assert not auto.one_call and "at most one" not in auto.text
    single = template.prompt({"messages": [{"role": "user", "content": "Paris?"}],
                              "tools": [WEATHER], "parallel_tool_calls": False})
    assert single.one_call and "Call at most one function." in single.text


def test_a_tool_round_trip_is_rendered_for_the_model(template: ChatTemplate) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    prompt = template.prompt({"messages": [
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ], "tools": [WEATHER]})
    assert ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
            in prompt.text)
    assert "<|im_start|>tool\n<tool_response>\n18C, sunny\n</tool_response>" in prompt.text


@pytest.mark.parametrize("request_body, message", [
    ({"messages": []}, "at least one message"),
    ({"messages": [{"content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not in 'tools'"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "function with a name"),
    ({"messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_schema", "json_schema": {}}}, "'schema'"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}},
     "unsupported response_format"),
])
def test_bad_requests_are_refused_with_a_reason(template: ChatTemplate, request_body: dict,
                                                message: str) -> None:
    with pytest.raises(RequestError, match=message):
        template.prompt(request_body)


def test_response_formats_become_grammars(template: ChatTemplate) -> None:
    messages = [{"role": "user", "content": "x"}]
    assert template.prompt({"messages": messages,
                            "response_format": {"type": "json_object"}}).grammar
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    grammar = template.prompt({"messages": messages, "response_format": {
        "type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}).grammar
    assert grammar is not None and "age" in grammar


def test_tool_call_replies_are_parsed_into_openai_calls() -> None:
    calls = parse_tool_calls('<tool_call>\n{"name": "get_weather", "arguments": '
                             '{"city": "Paris"}}\n</tool_call>\n<tool_call>{"name": "f"}')
    assert calls is not None and len(calls) == 2
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[1]["function"]["arguments"]) == {}
    assert parse_tool_calls("The weather is fine.") is None
    assert parse_tool_calls("<tool_call>not json</tool_call>") is None


def test_json_schema_strings_allow_only_json_characters() -> None:
    """Raw newlines and control characters inside strings are not JSON."""
    template = ChatTemplate(None, "", "")
    schema = {"type": "object", "properties": {"poem": {"type": "string"},
                                               "code": {"type": "string", "pattern": "^a.c$"}}}
    grammar = template.prompt({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"schema": schema}}}).grammar
    assert grammar is not None
    rules = dict(line.split(" ::= ", 1) for line in grammar.splitlines() if " ::= " in line)
    json_char = r'[^"\\\x7F\x00-\x1F]'  # what JSON allows unescaped in a string
    assert rules["char"].startswith(json_char)
    assert rules.get("dot", json_char) == json_char


def test_a_forced_tool_without_parameters_takes_no_arguments() -> None:
    template = ChatTemplate(None, "", "")
    tools = [{"type": "function", "function": {"name": "now"}}]
    grammar = template.prompt({"messages": [{"role": "user", "content": "x"}], "tools": tools,
                               "tool_choice": "required"}).grammar
    assert grammar is not None and '"{" space "}"' in grammar.replace("  ", " ")


def test_sampling_parameters_are_validated() -> None:
    sampling = Sampling.from_request({"max_tokens": 5, "temperature": 0, "stop": "END",
                                      "seed": 3, "top_p": 0.5, "presence_penalty": 1})
    assert (sampling.max_tokens, sampling.temperature, sampling.stop, sampling.seed) == (
        5, 0.0, ("END",), 3)
    for bad, message in [
        ({}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5, "temperature": 3}, "temperature"),
        ({"max_tokens": 5, "top_p": "high"}, "top_p"),
        ({"max_tokens": 5, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 5, "stop": [""]}, "stop"),
        ({"max_tokens": 5, "seed": 1.5}, "seed"),
    ]:
        with pytest.raises(RequestError, match=message):
            Sampling.from_request(bad)
