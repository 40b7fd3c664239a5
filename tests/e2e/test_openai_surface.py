"""The Responses API and tool calling through the gateway and the real SmolLM2 worker,
driven with the official `openai` package. The model is small, so calls are forced with
`tool_choice` naming the function; the test checks shapes, not the model's judgement."""

from __future__ import annotations

import asyncio
import json

import pytest
from openai import BadRequestError, OpenAI

from tests.support.processes import MODEL_ID, wait_for_workers

WEATHER = {"name": "get_weather", "description": "The weather now in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
LIFECYCLE = ["response.created", "response.in_progress", "response.output_item.added",
             "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done",
             "response.output_item.done", "response.completed"]


@pytest.fixture
def client(gateway_process, worker_process) -> OpenAI:
    gateway = gateway_process()
    _, key = asyncio.run(gateway.funded_key(10_000_000))
    wait_for_workers(gateway.url, 1, timeout=120, process=worker_process(gateway.url))
    return OpenAI(base_url=gateway.url + "/v1", api_key=key)


@pytest.mark.slow
def test_responses_plain_streamed_and_with_a_function_call(client: OpenAI) -> None:
    plain = client.responses.create(model=MODEL_ID, input="Say hello.",
                                    instructions="Answer in a few words.",
                                    max_output_tokens=48, temperature=0,
                                    metadata={"suite": "python"})
    assert plain.id.startswith("resp_") and plain.object == "response"
    assert plain.status in ("completed", "incomplete")
    assert plain.output[0].type == "message" and plain.output_text.strip()
    assert plain.usage is not None
    assert plain.usage.input_tokens > 0 and plain.usage.output_tokens > 0
    assert plain.metadata == {"suite": "python"}

    events = list(client.responses.create(model=MODEL_ID, input="Say hello.",
                                          instructions="Answer in a few words.",
                                          max_output_tokens=48, temperature=0, stream=True))
    names = [event.type for event in events]
    steps = [name for i, name in enumerate(names) if i == 0 or name != names[i - 1]]
    last = "response.completed" if plain.status == "completed" else "response.incomplete"
    assert steps == [*LIFECYCLE[:-1], last]
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == plain.output_text  # greedy decoding: the same text
    assert events[-1].response.usage.output_tokens == plain.usage.output_tokens
    with client.responses.stream(model=MODEL_ID, input="Say hello.", temperature=0,
                                 instructions="Answer in a few words.",
                                 max_output_tokens=48) as helper:  # the SDK's stream helper
        assert helper.get_final_response().output_text == plain.output_text

    tools = [{"type": "function", **WEATHER}]
    called = client.responses.create(
        model=MODEL_ID, input="What is the weather in Paris?", tools=tools,
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=64,
        temperature=0)
    [call] = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    assert isinstance(json.loads(call.arguments), dict)
    answer = client.responses.create(
        model=MODEL_ID, max_output_tokens=24, temperature=0, tools=tools,
        input=[{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id,
                "output": '{"temp_c": 21}'}])
    assert answer.output[0].type == "message" and answer.output_text.strip()
    with pytest.raises(BadRequestError) as refused:  # not stored: never silently ignored
        client.responses.create(model=MODEL_ID, input="And tomorrow?",
                                previous_response_id=called.id)
    assert refused.value.code == "previous_response_not_found"


@pytest.mark.slow
def test_a_two_step_tool_conversation_with_chat_completions(client: OpenAI) -> None:
    tools = [{"type": "function", "function": WEATHER}]
    forced = {"type": "function", "function": {"name": "get_weather"}}
    messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=tools,
                                           tool_choice=forced, max_tokens=64, temperature=0)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    assert choice.message.content is None  # as OpenAI sends a tool-call message

    stream = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=tools,
                                            tool_choice=forced, max_tokens=64, temperature=0,
                                            stream=True)
    deltas, reasons = [], []
    for chunk in stream:
        for c in chunk.choices:
            deltas.extend(c.delta.tool_calls or [])
            reasons.append(c.finish_reason)
    assert reasons[-1] == "tool_calls"
    assert {d.index for d in deltas} == {0} and deltas[0].id and deltas[0].type == "function"
    assert deltas[0].function.name == "get_weather" and len(deltas) > 2  # arguments stream
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == json.loads(call.function.arguments)

    assert first.usage is not None
    cut = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=tools,
                                         tool_choice=forced, temperature=0,
                                         max_tokens=first.usage.completion_tokens - 3)
    assert cut.choices[0].finish_reason == "length"  # a partial call, never raw markup
    assert "<tool_call>" not in (cut.choices[0].message.content or "")
    [partial] = cut.choices[0].message.tool_calls or []
    assert partial.function.name == "get_weather"
    assert call.function.arguments.startswith(partial.function.arguments)

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'}]
    second = client.chat.completions.create(model=MODEL_ID, messages=messages, tools=tools,
                                            tool_choice="none", max_tokens=24, temperature=0)
    reply = second.choices[0]
    assert reply.finish_reason in ("stop", "length") and not reply.message.tool_calls
    assert reply.message.content and reply.message.content.strip()


@pytest.mark.slow
def test_every_sampling_parameter_and_log_probabilities(client: OpenAI) -> None:
    """A penalty once killed the worker's engine: every parameter at a non-default value,
    then the worker must still answer."""
    messages = [{"role": "user", "content": "Name three colours."}]
    varied = client.chat.completions.create(
        model=MODEL_ID, messages=messages, max_tokens=16, temperature=0.7, top_p=0.9,
        frequency_penalty=0.1, presence_penalty=-0.3, seed=5, stop=["zzz"])
    assert varied.choices[0].message.content and varied.usage.completion_tokens > 0
    text = client.completions.create(model=MODEL_ID, prompt="Once upon a time", max_tokens=8,
                                     frequency_penalty=1.5, presence_penalty=1.5, seed=2)
    assert text.choices[0].text

    greedy = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=8,
                                            temperature=0, logprobs=True, top_logprobs=3)
    content = greedy.choices[0].logprobs.content
    assert len(content) == greedy.usage.completion_tokens == 8
    assert "".join(t.token for t in content) == greedy.choices[0].message.content
    for token in content:
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].token == token.token
        assert token.logprob <= 0 and bytes(token.bytes).decode() == token.token
    streamed = []
    for chunk in client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=8,
                                                temperature=0, logprobs=True, stream=True):
        for choice in chunk.choices:
            streamed.extend(choice.logprobs.content if choice.logprobs else [])
    assert [t.token for t in streamed] == [t.token for t in content]
    assert all(t.top_logprobs == [] for t in streamed)
    plain = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=4)
    assert plain.choices[0].logprobs is None

    legacy = client.completions.create(model=MODEL_ID, prompt="Once upon a time", max_tokens=6,
                                       temperature=0, logprobs=2)
    scored = legacy.choices[0].logprobs
    assert "".join(scored.tokens) == legacy.choices[0].text and len(scored.tokens) == 6
    assert all(len(alts) == 2 for alts in scored.top_logprobs)
    assert scored.text_offset[0] == 0 and scored.text_offset == sorted(scored.text_offset)
