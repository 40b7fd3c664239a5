"""The OpenAI Agents SDK (`openai-agents`) against a real gateway subprocess and the real SmolLM2
worker: an agent with a function tool, on the chat-completions model and on the Responses
model, run and streamed, with tracing disabled (it would send traces to OpenAI). The model is
tiny, so the tool is forced: the tests check that the SDK parsed the call, ran the function with
the parsed arguments and handed its result on, not how good the answers are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem
from openai import AsyncOpenAI

pytestmark = pytest.mark.slow

MODELS = {"chat": OpenAIChatCompletionsModel, "responses": OpenAIResponsesModel}
WEATHER_QUESTION = "What is the weather in Paris?"


@pytest.fixture(autouse=True, scope="module")
def _no_tracing() -> None:
    set_tracing_disabled(True)


@pytest.fixture(params=sorted(MODELS))
async def model(request, network) -> AsyncIterator[OpenAIChatCompletionsModel]:
    """The agent's model on the gateway, through a client of its own (one per event loop)."""
    async with AsyncOpenAI(base_url=network.base_url, api_key=network.api_key,
                           max_retries=0, timeout=120) as client:
        yield MODELS[request.param](model=network.model, openai_client=client)


def weather_tool(cities: list[str]):
    """A get_weather function tool that records the city it was called with."""

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"Sunny and 21 C in {city}."

    return get_weather


def settings(**kwargs) -> ModelSettings:
    return ModelSettings(temperature=0, **kwargs)


async def test_an_agent_answers(model) -> None:
    # SmolLM2 ends this reply by itself (9 tokens, greedy): the SDK raises on a response that
    # is "incomplete" (cut at max_tokens), as OpenAI's Responses API reports one.
    agent = Agent(name="greeter", instructions="Answer in a few words.", model=model,
                  model_settings=settings(max_tokens=48))
    result = await Runner.run(agent, "Hi!", max_turns=1)
    assert isinstance(result.final_output, str) and result.final_output
    assert [type(item) for item in result.new_items] == [MessageOutputItem]
    usage = result.context_wrapper.usage
    assert usage.requests == 1 and usage.input_tokens > 0 and usage.output_tokens > 0


async def test_an_agent_calls_its_function_tool(model) -> None:
    cities: list[str] = []
    agent = Agent(name="weather", instructions="Use the tool.", model=model,
                  tools=[weather_tool(cities)], tool_use_behavior="stop_on_first_tool",
                  model_settings=settings(tool_choice="get_weather", max_tokens=60))
    result = await Runner.run(agent, WEATHER_QUESTION, max_turns=2)
    assert len(cities) == 1 and cities[0], cities
    assert result.final_output == f"Sunny and 21 C in {cities[0]}."
    kinds = [type(item) for item in result.new_items]
    assert kinds == [ToolCallItem, ToolCallOutputItem], result.new_items


async def test_an_agent_answers_after_its_tool(model) -> None:
    """The tool's result goes back to the model, which answers (the forced choice is reset
    after the call, and the tool may not be called again)."""
    cities: list[str] = []
    agent = Agent(name="weather", instructions="Use the tool, then answer briefly.",
                  model=model, tools=[weather_tool(cities)],
                  model_settings=settings(tool_choice="get_weather", max_tokens=60))
    result = await Runner.run(agent, WEATHER_QUESTION, max_turns=2)
    assert len(cities) == 1, cities
    assert isinstance(result.final_output, str)
    kinds = [type(item) for item in result.new_items]
    assert kinds == [ToolCallItem, ToolCallOutputItem, MessageOutputItem], result.new_items
    assert result.context_wrapper.usage.requests == 2


async def test_a_streamed_run_calls_the_tool(model) -> None:
    cities: list[str] = []
    agent = Agent(name="weather", instructions="Use the tool.", model=model,
                  tools=[weather_tool(cities)], tool_use_behavior="stop_on_first_tool",
                  model_settings=settings(tool_choice="get_weather", max_tokens=60))
    run = Runner.run_streamed(agent, WEATHER_QUESTION, max_turns=2)
    events = [event async for event in run.stream_events()]
    raw = [event for event in events if event.type == "raw_response_event"]
    assert len(raw) >= 3, events
    items = [event.item for event in events if event.type == "run_item_stream_event"]
    assert [type(item) for item in items] == [ToolCallItem, ToolCallOutputItem], items
    assert len(cities) == 1 and run.final_output == f"Sunny and 21 C in {cities[0]}."
