"""`POST /v1/responses` against a real gateway with the scripted worker: the response
envelope, the named SSE lifecycle, function calls, input items and errors. The real model
is driven through the `openai` package in `test_openai_surface_e2e.py`."""

from __future__ import annotations

import json

import pytest

from tests.support.api import assert_openai_error
from tests.support.gateways import auth

WEATHER_TOOL = {"type": "function", "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
CALL = {"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event name, data) of each Server-Sent Event."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_plain_turn_has_the_response_envelope(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="Hi there friend")
    response = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": "Say hi", "instructions": "Be brief.",
        "max_output_tokens": 50, "temperature": 0.5, "top_p": 0.9,
        "metadata": {"suite": "api"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["status"] == "completed" and body["error"] is None
    assert body["metadata"] == {"suite": "api"}
    assert body["previous_response_id"] is None
    assert (body["instructions"], body["max_output_tokens"]) == ("Be brief.", 50)
    assert (body["temperature"], body["top_p"]) == (0.5, 0.9)
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["status"] == "completed" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "output_text", "text": "Hi there friend",
                                "annotations": [], "logprobs": []}]
    usage = body["usage"]
    assert usage["output_tokens"] == 3 and usage["input_tokens"] == worker.prompt_tokens
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # the worker got one chat job: instructions as the system message, then the input
    job = worker.jobs[0]
    assert job.kind == "chat"
    assert job.request["messages"] == [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Say hi"}]
    assert (job.request["max_tokens"], job.request["temperature"]) == (50, 0.5)
    balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
    assert int(balance["total_spent"]) > 0
    assert (await gw.store.audit()).ok


async def test_hitting_max_output_tokens_is_incomplete(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    await gw.worker(reply="one two three four five")
    body = (await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": "count", "max_output_tokens": 2})).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["content"][0]["text"] == "one two"


async def test_streaming_sends_the_named_lifecycle_in_order(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    await gw.worker(reply="alpha beta gamma")
    async with http.stream("POST", "/v1/responses", headers=auth(account.api_key), json={
            "model": "scripted-model", "input": "go", "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events((await response.aread()).decode())
    names = [name for name, _ in events]
    assert names == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 3,
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(1, len(events) + 1))
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    deltas = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    done = dict(events)["response.output_text.done"]
    assert deltas == done["text"] == "alpha beta gamma"
    item_id = dict(events)["response.output_item.added"]["item"]["id"]
    assert all(d["item_id"] == item_id for n, d in events if "text" in n or "part" in n)
    completed = events[-1][1]["response"]
    assert completed["id"] == created["id"] and completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "alpha beta gamma"
    assert completed["usage"]["output_tokens"] == 3
    assert (await gw.store.audit()).ok


async def test_function_calls_become_output_items(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(tool_calls=[CALL])
    request = {"model": "scripted-model", "input": "Weather in Paris?", "tools": [WEATHER_TOOL],
               "tool_choice": {"type": "function", "name": "get_weather"},
               "parallel_tool_calls": False}
    body = (await http.post("/v1/responses", headers=auth(account.api_key),
                            json=request)).json()
    [call] = body["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert (call["name"], call["call_id"]) == ("get_weather", "call_1")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["tools"][0]["name"] == "get_weather" and body["parallel_tool_calls"] is False
    job = worker.jobs[0].request
    assert job["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL["parameters"]}}]
    assert job["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert job["parallel_tool_calls"] is False

    async with http.stream("POST", "/v1/responses", headers=auth(account.api_key),
                           json={**request, "stream": True}) as response:
        events = sse_events((await response.aread()).decode())
    names = [name for name, _ in events]
    assert names == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    done = dict(events)["response.function_call_arguments.done"]
    assert (done["name"], done["arguments"]) == ("get_weather", '{"city": "Paris"}')
    assert events[-1][1]["response"]["output"][0]["type"] == "function_call"


async def test_allowed_tools_restrict_the_functions_offered(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(tool_calls=[CALL])
    clock = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
    choice = {"type": "allowed_tools", "mode": "required",
              "tools": [{"type": "function", "name": "get_weather"}]}
    response = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": "Weather in Paris?",
        "tools": [clock, WEATHER_TOOL], "tool_choice": choice})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tool_choice"] == choice
    assert [tool["name"] for tool in body["tools"]] == ["get_time", "get_weather"]
    job = worker.jobs[0].request
    assert [tool["function"]["name"] for tool in job["tools"]] == ["get_weather"]
    assert job["tool_choice"] == "required"

    unknown = {**choice, "tools": [{"type": "function", "name": "get_stock_price"}]}
    response = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": "x", "tools": [WEATHER_TOOL],
        "tool_choice": unknown})
    error = assert_openai_error(response, 400)
    assert error["param"] == "tool_choice" and "'get_stock_price'" in error["message"]
    assert len(worker.jobs) == 1


async def test_input_items_map_to_chat_messages(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker()
    response = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": [
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Weather "},
                         {"type": "input_text", "text": "in Paris?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather",
             "arguments": '{"city": "Lyon"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 21}'},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": '{"temp_c": 19}'}]},
        ]})
    assert response.status_code == 200, response.text
    messages = worker.jobs[0].request["messages"]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "tool", "tool"]
    assert messages[1]["content"] == "Weather in Paris?"
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[2]["tool_calls"][1]["function"]["arguments"] == '{"city": "Lyon"}'
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'}
    assert messages[4]["content"] == '{"temp_c": 19}'


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"input": []}, "input", "at least one"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input.0", "not supported"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role", "role"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input.0.content.0", "not supported"),
    ({"input": [{"role": "user", "content": 7}]}, "input.0.content", "typed parts"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id", "call_id"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools.0.type", "function"),
    ({"input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16 pairs"),
    ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.schema",
     "schema"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "greater"),
])
async def test_bad_requests_are_clear_400s(gw, http, body, param, words) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker()
    response = await http.post("/v1/responses", headers=auth(account.api_key),
                               json={"model": "scripted-model", **body})
    error = assert_openai_error(response, 400)
    assert error["param"] == param
    assert words in error["message"]
    assert worker.jobs == []
    balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
    assert balance["total_spent"] in (0, "0")


async def test_image_parts_for_a_text_only_model_are_refused(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    await gw.worker()
    response = await http.post("/v1/responses", headers=auth(account.api_key), json={
        "model": "scripted-model", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]}]})
    error = assert_openai_error(response, 400, "image_input_not_supported")
    assert "text only" in error["message"]


async def test_a_worker_failing_mid_stream_ends_with_response_failed(gw, http) -> None:
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker(reply="a b c d e f g h", token_delay_s=0.05)
    async with http.stream("POST", "/v1/responses", headers=auth(account.api_key), json={
            "model": "scripted-model", "input": "go", "stream": True}) as response:
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("event: response.output_text.delta"):
                break
        await worker.send_error(worker.jobs[0].job_id, "engine_failed")
        rest = "\n".join([line async for line in lines])
    failed = [json.loads(line[6:]) for line in rest.splitlines()
              if line.startswith("data: ") and '"response.failed"' in line]
    assert failed and failed[0]["response"]["status"] == "failed"
    assert failed[0]["response"]["error"]["code"]
@pytest.mark.parametrize(("field", "value", "param", "code", "words"), [
    ("previous_response_id", "resp_invented", "previous_response_id",
     "previous_response_not_found", "Previous response with id 'resp_invented' not found."),
    ("conversation", "conv_invented", "conversation", "conversation_not_found",
     "Conversation with id 'conv_invented' not found."),
    ("conversation", {"id": "conv_object"}, "conversation", "conversation_not_found",
     "Conversation with id 'conv_object' not found."),
])
async def test_stored_state_is_never_ignored(gw, http, field, value, param, code,
                                             words) -> None:
    """No response or conversation is stored, so any reference to one is a 400, as OpenAI
    answers for an id it does not know, and nothing runs or is billed."""
    account = await gw.account(credit=1_000_000)
    worker = await gw.worker()
    for stream in (False, True):
        response = await http.post("/v1/responses", headers=auth(account.api_key), json={
            "model": "scripted-model", "input": "continue", field: value, "stream": stream})
        error = assert_openai_error(response, 400, code)
        assert error["param"] == param and error["type"] == "invalid_request_error"
        assert words in error["message"]
    assert worker.jobs == []
    balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
    assert balance["total_spent"] in (0, "0")


    assert (await gw.store.audit()).ok
