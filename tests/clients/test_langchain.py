"""LangChain's OpenAI integration (`langchain-openai`) against a real gateway subprocess and the
real SmolLM2 worker: chat, streaming, `bind_tools` with a forced tool, `with_structured_output`
(json_schema), embeddings, and the Responses API mode. The model is tiny, so each test checks
what LangChain parsed (messages, tool calls, objects, vectors), not how good the answers are."""

from __future__ import annotations

import functools
import operator

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

pytestmark = pytest.mark.slow

WEATHER_QUESTION = "What is the weather in Paris?"
DIMENSIONS = 576  # SmolLM2-135M's embedding size


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 21 C in {city}."


class Person(BaseModel):
    """A person, as the structured output."""

    name: str = Field(max_length=24)
    age: int


def chat(network, **kwargs) -> ChatOpenAI:
    """A ChatOpenAI on the gateway: greedy, no retries (a failure shows as it happened).
    The Responses API has no `seed`, so only chat completions get one."""
    seed = {} if kwargs.get("use_responses_api") else {"seed": 7}
    settings = {"temperature": 0, "max_tokens": 16, **seed, **kwargs}
    return ChatOpenAI(model=network.model, base_url=network.base_url, api_key=network.api_key,
                      max_retries=0, timeout=120, **settings)


def joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    assert chunks, "the stream yielded nothing"
    return functools.reduce(operator.add, chunks)


def assert_forced_call(message: AIMessage) -> dict:
    """The message holds exactly one parsed get_weather call; returns its arguments."""
    assert message.invalid_tool_calls == [], message.invalid_tool_calls
    assert len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert call["name"] == "get_weather"
    assert call["id"]
    assert isinstance(call["args"].get("city"), str), call
    return call


def test_chat(network) -> None:
    reply = chat(network, max_tokens=12).invoke("Say hello.")
    assert isinstance(reply, AIMessage)
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.response_metadata["model_name"] == network.model
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] > 0


def test_stream(network) -> None:
    chunks = list(chat(network, stream_usage=True).stream("Count from one to five."))
    texts = [chunk.content for chunk in chunks if chunk.content]
    assert len(texts) >= 3, chunks
    full = joined(chunks)
    assert full.content == "".join(texts)
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] > 0
    assert full.response_metadata["finish_reason"] in ("stop", "length")


def test_bind_tools_with_a_forced_tool_then_its_result(network) -> None:
    llm = chat(network, max_tokens=60)
    forced = llm.bind_tools([get_weather], tool_choice="get_weather")
    question = HumanMessage(WEATHER_QUESTION)
    called = forced.invoke([question])
    call = assert_forced_call(called)
    assert called.response_metadata["finish_reason"] == "tool_calls"

    streamed = list(forced.stream([question]))
    assert any(chunk.tool_call_chunks for chunk in streamed), streamed
    assert_forced_call(joined(streamed))

    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = chat(network).bind_tools([get_weather], tool_choice="none").invoke(
        [question, called, result])
    assert answer.tool_calls == []
    assert isinstance(answer.content, str)
    assert answer.response_metadata["finish_reason"] in ("stop", "length")


def test_structured_output_with_json_schema(network) -> None:
    llm = chat(network, max_tokens=64).with_structured_output(
        Person, method="json_schema", include_raw=True)
    result = llm.invoke("Invent a person: give a name and an age.")
    assert result["parsing_error"] is None, result
    assert isinstance(result["parsed"], Person), result
    assert result["raw"].response_metadata["finish_reason"] == "stop", result["raw"]


def test_embeddings(network) -> None:
    embeddings = OpenAIEmbeddings(model=network.model, base_url=network.base_url,
                                  api_key=network.api_key, check_embedding_ctx_length=False,
                                  max_retries=0)
    vectors = embeddings.embed_documents(["red", "green", "blue"])
    assert [len(vector) for vector in vectors] == [DIMENSIONS] * 3
    assert vectors[0] != vectors[1]
    query = embeddings.embed_query("red")
    assert len(query) == DIMENSIONS
    assert query == pytest.approx(vectors[0], abs=1e-4)


def test_token_arrays_are_refused_with_the_langchain_hint(network) -> None:
    """OpenAIEmbeddings' default (check_embedding_ctx_length=True) sends token ids, not texts:
    here they are sent as it does, through the client it holds."""
    embeddings = OpenAIEmbeddings(model=network.model, base_url=network.base_url,
                                  api_key=network.api_key, check_embedding_ctx_length=False,
                                  max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        embeddings.client.create(input=[[9906, 1917]], model=network.model)
    assert refused.value.status_code == 400
    assert "check_embedding_ctx_length=False" in refused.value.message


def test_responses_api(network) -> None:
    llm = chat(network, max_tokens=24, use_responses_api=True)
    reply = llm.invoke("Say hello.")
    assert isinstance(reply, AIMessage)
    assert reply.text, reply
    assert reply.response_metadata["id"].startswith("resp_")
    assert reply.response_metadata["status"] in ("completed", "incomplete")
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0

    chunks = list(llm.stream("Count from one to five."))
    full = joined(chunks)
    assert sum(1 for chunk in chunks if chunk.text) >= 3, chunks
    assert full.text, full

    forced = chat(network, max_tokens=60, use_responses_api=True).bind_tools(
        [get_weather], tool_choice="get_weather")
    called = forced.invoke(WEATHER_QUESTION)
    assert_forced_call(called)


def test_responses_api_carries_the_conversation(network) -> None:
    """A second turn sends the whole conversation as input items (LangChain's AIMessage of the
    first response included), so the second prompt holds the first turn."""
    llm = chat(network, max_tokens=8, use_responses_api=True)
    first_message = HumanMessage("My name is Ada.")
    first = llm.invoke([first_message])
    second = llm.invoke([first_message, first, HumanMessage("What is my name?")])
    assert first.usage_metadata is not None and second.usage_metadata is not None
    earlier = first.usage_metadata["input_tokens"] + first.usage_metadata["output_tokens"]
    assert second.usage_metadata["input_tokens"] > earlier, (first.usage_metadata,
                                                             second.usage_metadata)
    assert second.text, second
