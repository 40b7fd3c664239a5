"""Jobs of each kind through a served model (real SmolLM2): the frames a worker sends back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nexus_app.protocol import Chunk, Done, Error, Job, has_output
from nexus_app.worker.models import resolve
from nexus_app.worker.serving import ModelServer

Frame = Chunk | Done | Error


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    [local] = resolve([], tmp_path_factory.mktemp("models"))
    served = ModelServer(local, slots=2, context_per_slot=1024, threads=2, gpu_layers=-1)
    yield served
    served.close()


def job(kind: str, request: dict[str, Any], job_id: str = "job_1") -> Job:
    return Job(job_id=job_id, kind=kind, model="smollm2-135m-instruct-q4_1",  # type: ignore
               request=request, deadline=time.time() + 60)


async def run(server: ModelServer, the_job: Job) -> list[Frame]:
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    await server.serve(the_job, send)
    return frames


def test_the_card_describes_the_model(server: ModelServer) -> None:
    card = server.card
    assert (card.id, card.quantization, card.context_length) == (
        "smollm2-135m-instruct-q4_1", "Q4_1", 1024)
    assert card.parameters and card.parameters > 100_000_000 and card.embeddings


async def test_a_chat_job_streams_chunks_then_done_with_usage(server: ModelServer) -> None:
    frames = await run(server, job("chat", {
        "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 12, "seed": 1}))
    start, *chunks, done = frames
    assert isinstance(start, Chunk) and not has_output(start)  # the engine took the job
    assert all(isinstance(f, Chunk) and f.text for f in chunks) and isinstance(done, Done)
    assert done.finish_reason in ("stop", "length") and done.usage.prompt_tokens > 5
    assert 0 < len(chunks) <= done.usage.completion_tokens <= 12


async def test_a_forced_tool_choice_returns_a_call_with_json_arguments(server: ModelServer
                                                                     ) -> None:
    tool = {"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    frames = await run(server, job("chat", {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [tool], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 60, "temperature": 0}))
    start, *chunks, done = frames
    assert isinstance(start, Chunk) and not has_output(start)
    assert all(isinstance(c, Chunk) and c.tool_calls and not c.text for c in chunks)
    assert len(chunks) > 2  # the arguments stream as they are generated
    first = chunks[0].tool_calls[0]  # type: ignore[union-attr,index]
    assert first["type"] == "function" and first["function"]["name"] == "get_weather"
    arguments = "".join(d["function"].get("arguments", "")
                        for c in chunks for d in c.tool_calls or ())  # type: ignore[union-attr]
    assert isinstance(json.loads(arguments)["city"], str)
    assert isinstance(done, Done) and done.finish_reason == "tool_calls"


async def test_a_completion_job_continues_the_prompt(server: ModelServer) -> None:
    frames = await run(server, job("completion", {
        "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}))
    assert isinstance(frames[-1], Done) and frames[-1].usage.completion_tokens >= 1
    assert "".join(f.text for f in frames if isinstance(f, Chunk)).strip()


async def test_an_embeddings_job_returns_one_vector_per_input(server: ModelServer) -> None:
    [done] = await run(server, job("embeddings", {"input": ["a cat", "a dog"]}))
    assert isinstance(done, Done) and done.embeddings is not None
    assert [len(v) for v in done.embeddings] == [576, 576]
    assert done.usage.prompt_tokens >= 4 and done.usage.completion_tokens == 0


@pytest.mark.parametrize("kind, request_body", [
    ("chat", {"messages": [], "max_tokens": 5}),
    ("chat", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5,
              "temperature": 9}),
    ("completion", {"prompt": 42, "max_tokens": 5}),
    ("embeddings", {"input": []}),
    ("embeddings", {"input": "x" * 20_000}),
])
async def test_bad_jobs_get_an_error_frame_and_the_server_keeps_serving(
    server: ModelServer, kind: str, request_body: dict[str, Any]
) -> None:
    [error] = await run(server, job(kind, request_body))
    assert isinstance(error, Error) and error.job_id == "job_1"
    assert error.code in ("invalid_request", "context_length_exceeded") and error.message
    frames = await run(server, job("completion", {"prompt": "Hi", "max_tokens": 2}))
    assert isinstance(frames[-1], Done)


async def test_cancel_ends_the_job_with_what_was_generated(server: ModelServer) -> None:
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) == 3:
            assert server.cancel("job_c")

    await asyncio.wait_for(server.serve(job("chat", {
        "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 400},
        "job_c"), send), 30)
    done = frames[-1]
    assert isinstance(done, Done) and done.finish_reason == "cancelled"
    assert done.usage.completion_tokens <= 3 + 2
    assert not server.cancel("job_c")  # forgotten once finished
