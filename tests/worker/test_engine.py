"""The inference engine on the real SmolLM2 model: sampling, stops, batching, cancel, embeddings."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import llama_cpp
import pytest

from nexus_app.config import FlashAttention
from nexus_app.worker.engine import Engine, _Sequence, fill_batch
from nexus_app.worker.events import Embedded, Failed, Finished, Started, Stream, Text
from nexus_app.worker.llamacpp import Batch, Context, Model, flash_attention_type
from nexus_app.worker.models import bundled_model_path, describe
from nexus_app.worker.prompts import ChatTemplate
from nexus_app.worker.sampling import Sampling
from tests.support.engine import chat_tokens, collect, far
from tests.support.faulty_sampling import FatalSampling, FaultySampling

STORY = [{"role": "user", "content": "Write a long story about a dragon and a knight."}]


@pytest.fixture(scope="module")
def engine(model: Model) -> Iterator[Engine]:
    running = Engine(model, slots=2, context_per_slot=1024, threads=os.cpu_count() or 1)
    yield running
    running.close()


async def test_generates_until_max_tokens(engine: Engine, model: Model) -> None:
    prompt = chat_tokens(model, STORY)
    text, end = await collect(engine.generate(prompt, Sampling(max_tokens=24, seed=1), far()))
    assert isinstance(end, Finished)
    assert (end.reason, end.completion_tokens, end.prompt_tokens) == ("length", 24, len(prompt))
    assert len(text.split()) >= 5


async def test_same_seed_same_text_and_greedy_is_deterministic(engine: Engine, model: Model
                                                               ) -> None:
    prompt = chat_tokens(model, STORY)
    runs = [await collect(engine.generate(prompt, Sampling(max_tokens=20, seed=7), far()))
            for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    greedy = [await collect(engine.generate(prompt, Sampling(max_tokens=20, temperature=0),
                                            far())) for _ in range(2)]
    assert greedy[0][0] == greedy[1][0]
    other = await collect(engine.generate(prompt, Sampling(max_tokens=20, seed=8), far()))
    assert other[0] != runs[0][0]


async def test_stop_string_ends_the_reply_before_it(engine: Engine, model: Model) -> None:
    prompt = chat_tokens(model, STORY)
    full, _ = await collect(engine.generate(prompt, Sampling(max_tokens=40, temperature=0),
                                            far()))
    words = full.split()
    stop = " " + words[len(words) // 2]
    expected = full[: full.index(stop)]
    text, end = await collect(engine.generate(
        prompt, Sampling(max_tokens=40, temperature=0, stop=(stop,)), far()))
    assert isinstance(end, Finished) and end.reason == "stop"
    assert text == expected


async def test_concurrent_streams_beyond_the_slots_all_finish_interleaved(
    engine: Engine, model: Model
) -> None:
    """Five requests on two slots: none is dropped, and the first two progress together."""
    prompt = chat_tokens(model, STORY)
    order: list[int] = []

    async def one(index: int) -> Finished | Failed | Embedded:
        stream = engine.generate(prompt, Sampling(max_tokens=16, seed=index), far())
        async for event in stream:
            if isinstance(event, Text):
                order.append(index)
            elif not isinstance(event, Started):
                return event
        raise AssertionError

    ends = await asyncio.gather(*(one(i) for i in range(5)))
    assert all(isinstance(e, Finished) and e.completion_tokens == 16 for e in ends)
    first_two = [i for i in order if i in (0, 1)]
    assert first_two[:6].count(0) >= 2 and first_two[:6].count(1) >= 2  # decoded side by side


async def test_cancel_stops_generation_within_two_tokens(engine: Engine, model: Model) -> None:
    prompt = chat_tokens(model, STORY)
    stream = engine.generate(prompt, Sampling(max_tokens=500, seed=3), far())
    seen = 0
    async for event in stream:
        if isinstance(event, Text):
            seen += 1
            if seen == 5:
                stream.cancel()
        elif not isinstance(event, Started):
            end = event
    assert isinstance(end, Finished) and end.reason == "cancelled"
    assert end.completion_tokens <= 5 + 2


async def test_deadline_and_oversized_prompt_fail_clearly(engine: Engine, model: Model) -> None:
    prompt = chat_tokens(model, STORY)
    _, late = await collect(engine.generate(prompt, Sampling(max_tokens=50),
                                            time.monotonic() - 1))
    assert isinstance(late, Failed) and late.code == "deadline_exceeded"
    _, big = await collect(engine.generate([1] * 2000, Sampling(max_tokens=5), far()))
    assert isinstance(big, Failed) and big.code == "context_length_exceeded"


async def test_a_generation_starts_before_its_text_and_a_refusal_never_starts(
        engine: Engine, model: Model) -> None:
    """`Started` comes once, first, when the prompt has a slot: the worker tells the gateway
    then, and the client's response headers go out while the prompt is read."""
    prompt = chat_tokens(model, STORY)
    events = [event async for event in engine.generate(prompt, Sampling(max_tokens=3), far())]
    assert isinstance(events[0], Started) and isinstance(events[-1], Finished)
    assert [type(e) for e in events[1:-1]] == [Text] * (len(events) - 2)
    refused = [event async for event in engine.generate([1] * 2000, Sampling(max_tokens=3),
                                                        far())]
    assert len(refused) == 1 and isinstance(refused[0], Failed)


async def test_a_batch_holds_its_sequences_in_order_of_id_generating_ones_first(
        model: Model) -> None:
    """Sequences of separate KV caches decode in one pass only when the batch holds them in
    order of sequence id; the generating ones' tokens are never crowded out by prompts."""
    loop_stream = Stream(asyncio.get_running_loop())

    def sequence(seq_id: int, prompt: int, next_token: int | None) -> _Sequence:
        made = _Sequence(loop_stream, list(range(100, 100 + prompt)), Sampling(max_tokens=8), far(),
                         seq_id=seq_id, next_token=next_token)
        made.fed = 0 if next_token is None else prompt
        return made

    sequences = [sequence(0, 10, None), sequence(1, 4, 7), sequence(2, 10, None),
                 sequence(3, 4, 9)]
    batch = Batch(16)
    try:
        fill_batch(batch, sequences)
        raw = batch.raw
        seq_ids = [raw.seq_id[i][0] for i in range(batch.size)]
        assert seq_ids == sorted(seq_ids) == [0] * 10 + [1] + [2] * 4 + [3]
        assert [raw.token[i] for i in (10, 15)] == [7, 9]  # both generating sequences
        assert [s.fed for s in sequences] == [10, 4, 4, 4]  # 2 had room for 4 of its 10
        assert [s.logits_at for s in sequences] == [9, 10, None, 15]
    finally:
        batch.close()


async def test_json_grammar_gives_valid_json(engine: Engine, model: Model) -> None:
    from llama_cpp.llama_grammar import JSON_GBNF

    prompt = chat_tokens(model, [{"role": "user", "content":
                                          "A person as JSON with only a name and an age."}])
    text, end = await collect(engine.generate(
        prompt, Sampling(max_tokens=200, temperature=0, grammar=JSON_GBNF), far()))
    assert isinstance(end, Finished) and end.reason == "stop"
    assert isinstance(json.loads(text), dict)


async def test_embeddings_are_normalised_and_deterministic(engine: Engine, model: Model) -> None:
    inputs = [model.tokenize(t, add_special=True, parse_special=False)
              for t in ("The cat sat on the mat.", "Stock markets fell sharply.",
                        "The cat sat on the mat.")]
    _, end = await collect(engine.embed(inputs))
    assert isinstance(end, Embedded)
    assert len(end.vectors) == 3 and all(len(v) == model.n_embd == 576 for v in end.vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in end.vectors)
    assert end.vectors[0] == end.vectors[2] != end.vectors[1]
    assert end.prompt_tokens == sum(len(t) for t in inputs)


async def test_every_sampling_parameter_at_non_default_values(engine: Engine, model: Model
                                                              ) -> None:
    """Penalties once killed the engine thread (a C signature mismatch); each parameter,
    alone and all together, must give a reply, and the engine must serve the next one."""
    prompt = chat_tokens(model, STORY)
    settings: list[dict[str, Any]] = [
        {"frequency_penalty": 0.1}, {"presence_penalty": 0.1},
        {"frequency_penalty": -1.5, "presence_penalty": 2.0},
        {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "frequency_penalty": 0.5,
         "presence_penalty": 0.4, "seed": 11, "stop": ("zzz",), "logprobs": 3},
    ]
    for values in settings:
        text, end = await collect(engine.generate(prompt, Sampling(max_tokens=12, **values),
                                                  far()))
        assert isinstance(end, Finished), (values, end)
        assert end.completion_tokens == 12 and text
    penalised, _ = await collect(engine.generate(
        prompt, Sampling(max_tokens=40, temperature=0, frequency_penalty=2.0), far()))
    plain, _ = await collect(engine.generate(prompt, Sampling(max_tokens=40, temperature=0),
                                             far()))
    assert penalised != plain  # the penalty really reaches the sampler


async def test_log_probabilities_of_each_token_and_its_alternatives(engine: Engine,
                                                                    model: Model) -> None:
    prompt = chat_tokens(model, STORY)
    stream = engine.generate(prompt, Sampling(max_tokens=10, temperature=0, logprobs=20), far())
    texts, tokens = [], []
    async for event in stream:
        if isinstance(event, Text):
            texts.append(event.text)
            tokens.extend(event.logprobs)
    assert len(tokens) == 10
    assert "".join(t.token for t in tokens) == "".join(texts)
    for token in tokens:
        assert len(token.top_logprobs) == 20
        assert token.top_logprobs[0].token == token.token  # greedy picks the likeliest
        assert token.logprob == token.top_logprobs[0].logprob <= 0
        ranked = [alt.logprob for alt in token.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        assert math.fsum(math.exp(lp) for lp in ranked) <= 1.0 + 1e-6
        assert bytes(token.bytes).decode() == token.token
    quiet = [event async for event in engine.generate(
        prompt, Sampling(max_tokens=3, temperature=0), far())]
    assert all(not event.logprobs for event in quiet if isinstance(event, Text))


async def test_a_character_cut_off_at_the_end_is_dropped_not_replaced(engine: Engine) -> None:
    sequence = _Sequence(Stream(asyncio.get_running_loop()), [1], Sampling(max_tokens=1),
                         far())
    assert sequence.decoder.decode("é€".encode()[:3]) == "é"  # and half of the euro sign
    sequence.stream.put(engine._finished(sequence, "length"))
    events = [event async for event in sequence.stream]
    assert all("\ufffd" not in e.text for e in events if isinstance(e, Text))


async def test_a_failing_request_fails_alone_and_the_engine_serves_the_next(
    engine: Engine, model: Model
) -> None:
    prompt = chat_tokens(model, STORY)
    _, bad = await collect(engine.generate(prompt, FaultySampling(max_tokens=5), far()))
    assert isinstance(bad, Failed) and bad.code == "worker_error"
    _, good = await collect(engine.generate(prompt, Sampling(max_tokens=5), far()))
    assert isinstance(good, Finished) and good.completion_tokens == 5


async def test_a_fault_the_engine_cannot_survive_fails_everything_and_is_reported(
    model: Model
) -> None:
    faults: list[str] = []
    doomed = Engine(model, slots=2, context_per_slot=512, threads=os.cpu_count() or 1,
                    on_fault=faults.append)
    try:
        prompt = chat_tokens(model, STORY)
        running = doomed.generate(prompt, Sampling(max_tokens=300), far())
        killer = doomed.generate(prompt, FatalSampling(max_tokens=5), far())
        _, first = await collect(running)
        _, second = await collect(killer)
        assert isinstance(second, Failed) and second.code == "engine_failed"
        assert isinstance(first, Failed) and first.code == "engine_failed"
        assert faults == ["EngineKiller"] and doomed.fault == "EngineKiller"
        _, later = await asyncio.wait_for(collect(doomed.generate(prompt, Sampling(max_tokens=5),
                                                                  far())), 5)
        assert isinstance(later, Failed) and later.code == "engine_failed"
        _, embedded = await asyncio.wait_for(collect(doomed.embed([[1, 2]])), 5)
        assert isinstance(embedded, Failed) and embedded.code == "engine_failed"
    finally:
        doomed.close()


POEM = {"type": "object", "properties": {"poem": {"type": "string"}}, "required": ["poem"]}


async def test_json_schema_output_parses_for_every_seed(engine: Engine, model: Model) -> None:
    """The schema grammar once let raw newlines into strings (seeds 2 and 3 broke
    `json.loads`); every seed's output must now parse and match the schema."""
    messages = [{"role": "user", "content": "Write a poem about the sea, as JSON."}]
    request = {"messages": messages,
               "response_format": {"type": "json_schema", "json_schema": {"schema": POEM}}}
    path = bundled_model_path()
    assert path is not None
    template = ChatTemplate(describe(path).chat_template, model.bos_text, model.eos_text)
    chat = template.prompt(request)
    assert chat.grammar is not None
    prompt = model.tokenize(chat.text, add_special=False, parse_special=True)

    async def one(seed: int) -> tuple[str, Finished | Failed | Embedded]:
        sampling = Sampling(max_tokens=64, temperature=1.0, seed=seed, grammar=chat.grammar)
        return await collect(engine.generate(prompt, sampling, far()))

    results = [await one(seed) for seed in range(8)]
    for seed, (text, end) in enumerate(results):
        assert isinstance(end, Finished), (seed, end)
        if end.reason == "length":  # cut off inside the poem: closing it must give JSON
            text += '"}'
        assert isinstance(json.loads(text)["poem"], str), (seed, text)
    assert any(end.reason == "stop" for _, end in results)  # type: ignore[union-attr]


@pytest.mark.parametrize(("setting", "expected"), [("auto", "disabled"), ("on", "enabled"),
                                                   ("off", "disabled")])
def test_flash_attention_is_off_for_a_model_on_the_cpu_unless_asked_for(
        model: Model, setting: FlashAttention, expected: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """llama.cpp's CPU flash-attention kernel made a chat turn's prompt three times slower
    (`flash_attention_type`); on a GPU "auto" leaves the choice to llama.cpp."""
    assert not model.gpu_layers  # this build has no GPU
    with caplog.at_level(logging.DEBUG, logger="nexus_app.llama"):
        Context(model, n_ctx=256, n_seq=1, threads=1, flash_attention=setting).close()
    said = [r.getMessage().split("=")[-1].strip() for r in caplog.records
            if r.getMessage().startswith("llama_context: flash_attn ")]
    assert said == [expected]
    on_a_gpu = SimpleNamespace(gpu_layers=30)
    assert flash_attention_type("auto", on_a_gpu) == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
