"""Prompt-prefix reuse on the real SmolLM2 model: a finished job's tokens stay in its slot's
KV cache and the next job that shares a prefix with them feeds only the rest. A reply from a
reused cache must be the reply a cold slot gives (greedy decoding compares them token for
token), and the slot choice must keep a conversation's cache from being evicted by an
unrelated request."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator

import pytest

from nexus_app.worker.engine import Engine
from nexus_app.worker.events import Finished, Text
from nexus_app.worker.llamacpp import Model
from nexus_app.worker.sampling import Sampling
from nexus_app.worker.slots import Slots, common_prefix
from tests.support.engine import chat_tokens, collect, far

GREEDY = Sampling(max_tokens=16, temperature=0)
TURN_1 = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture
def engine(model: Model) -> Iterator[Engine]:
    running = Engine(model, slots=2, context_per_slot=1024, threads=os.cpu_count() or 1)
    yield running
    running.close()


@pytest.fixture(scope="module")
def cold(model: Model) -> Iterator[Engine]:
    """An engine whose slots never hold a prefix for the prompts of these tests: the
    reference for what a reply must be."""
    running = Engine(model, slots=1, context_per_slot=1024, threads=os.cpu_count() or 1)
    yield running
    running.close()


async def run(engine: Engine, prompt: list[int], sampling: Sampling = GREEDY
              ) -> tuple[str, Finished]:
    text, end = await collect(engine.generate(prompt, sampling, far()))
    assert isinstance(end, Finished), end
    return text, end


async def reference(cold: Engine, prompt: list[int]) -> str:
    await run(cold, cold.model.tokenize("x", False, False))  # evicts what the slot held
    text, end = await run(cold, prompt)
    assert end.cached_tokens < 2  # the eviction above left nothing of `prompt`
    return text


def second_turn(model: Model, reply: str) -> list[int]:
    return chat_tokens(model, [*TURN_1, {"role": "assistant", "content": reply},
                               {"role": "user", "content": "And two more?"}])


async def test_the_next_chat_turn_feeds_only_what_is_new(engine: Engine, cold: Engine,
                                                        model: Model) -> None:
    first = chat_tokens(model, TURN_1)
    reply, end = await run(engine, first)
    assert end.cached_tokens == 0
    prompt = second_turn(model, reply)
    shared = common_prefix(first, prompt)
    assert shared >= len(first) - 2  # the template adds the reply after the first prompt
    text, end = await run(engine, prompt)
    assert end.cached_tokens >= shared and end.prompt_tokens == len(prompt)
    assert text == await reference(cold, prompt)


async def test_the_same_prompt_again_feeds_one_token_and_gives_the_same_reply(
        engine: Engine, model: Model) -> None:
    """Also after a reply twice as long as the prompt (a regenerated reply): the slot would
    keep only a third of its cache, but it holds the whole prompt."""
    prompt = chat_tokens(model, [{"role": "user", "content": "Tell me a long story."}])
    sampling = Sampling(max_tokens=2 * len(prompt), temperature=0)
    first, end = await run(engine, prompt, sampling)
    assert end.completion_tokens == 2 * len(prompt)
    again, end = await run(engine, prompt, sampling)
    assert (again, end.cached_tokens) == (first, len(prompt) - 1)


async def test_a_cancelled_reply_leaves_a_cache_that_is_reused_correctly(
        engine: Engine, cold: Engine, model: Model) -> None:
    first = chat_tokens(model, TURN_1)
    stream = engine.generate(first, Sampling(max_tokens=200, temperature=0), far())
    async for event in stream:
        if isinstance(event, Text):
            stream.cancel()  # after the first piece: the cache holds the prompt and some reply
    prompt = second_turn(model, "Red, orange and yellow.")
    text, end = await run(engine, prompt)
    assert end.cached_tokens >= len(first) - 2
    assert text == await reference(cold, prompt)


async def test_an_unrelated_request_takes_the_other_slot_and_the_chat_keeps_its_cache(
        engine: Engine, model: Model) -> None:
    chat = chat_tokens(model, TURN_1)
    reply, _ = await run(engine, chat)
    other = chat_tokens(model, [{"role": "user", "content": "Count from one to five."}])
    _, end = await run(engine, other)
    assert end.cached_tokens < len(other) // 2
    _, end = await run(engine, second_turn(model, reply))
    assert end.cached_tokens >= len(chat) - 2


async def test_concurrent_jobs_with_a_shared_system_prompt_match_a_cold_run(
        engine: Engine, cold: Engine, model: Model) -> None:
    system = {"role": "system", "content": "You are a terse assistant. " * 8}
    prompts = [chat_tokens(model, [system, {"role": "user", "content": question}])
               for question in ("What is two plus two?", "Name a fruit.", "Say hi.")]
    await run(engine, prompts[0])
    results = await asyncio.gather(*(run(engine, prompt) for prompt in prompts))
    # the first finds its own prompt, the second a cold slot, the third (queued for a free
    # slot) the system prompt in whichever slot frees first
    assert results[0][1].cached_tokens == len(prompts[0]) - 1
    assert results[2][1].cached_tokens > 40
    for prompt, (text, _) in zip(prompts, results, strict=True):
        assert text == await reference(cold, prompt)


def test_slot_choice_longest_prefix_then_least_recently_used() -> None:
    slots = Slots(3, min_similarity=0.5)
    taken = [slots.take([9])[0] for _ in range(3)]
    slots.give_back(taken[0], [1, 2, 3, 4])
    slots.give_back(taken[1], [1, 2, 7])
    slots.give_back(taken[2], [])
    assert slots.take([1, 2, 3, 4, 5]) == (taken[0], 4)
    assert len(slots) == 2
    slots.give_back(taken[0], [1, 2, 3, 4, 5, 6])
    # the whole prompt cached: the last token is fed again for its logits
    assert slots.take([1, 2, 3]) == (taken[0], 2)
    # nothing shared: the least recently used slot
    seq_id, reused = slots.take([5, 6, 7, 8])
    assert (seq_id, reused) == (taken[1], 0)


def test_below_the_minimum_similarity_the_cold_slot_is_taken() -> None:
    slots = Slots(2, min_similarity=0.9)
    first, second = slots.take([0])[0], slots.take([0])[0]
    slots.give_back(first, [])
    slots.give_back(second, [1, 2, 3, 4, 5, 6, 7, 8])  # would keep 5 of 8: under 0.9
    assert slots.take([1, 2, 3, 4, 5, 50, 51, 52, 53, 54]) == (first, 0)
    assert slots.take([1, 2, 3, 4, 5, 50, 51, 52, 53, 54]) == (second, 5)


def test_a_prompt_sent_again_finds_its_slot_however_long_the_reply_after_it() -> None:
    """A regenerated reply: its slot keeps only the prompt (10 of 50 tokens), which is still
    the whole prompt; a cold slot would make it read the prompt again."""
    slots = Slots(2, min_similarity=0.5)
    first, second = slots.take([0])[0], slots.take([0])[0]
    prompt = list(range(100, 110))
    slots.give_back(second, [])  # the least recently used
    slots.give_back(first, [*prompt, *range(200, 240)])
    assert slots.take(prompt) == (first, len(prompt) - 1)


def test_the_common_prefix_is_counted_token_by_token() -> None:
    rnd = random.Random(4)
    for _ in range(3000):
        a = [rnd.randint(0, 2) for _ in range(rnd.randint(0, 30))]
        b = a[:rnd.randint(0, len(a))] + [rnd.randint(0, 2) for _ in range(rnd.randint(0, 30))]
        expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                        min(len(a), len(b)))
        assert common_prefix(a, b) == expected
