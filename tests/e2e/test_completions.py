"""`/v1/completions` and `/v1/embeddings` through the gateway and the real SmolLM2 worker,
driven with the official `openai` package (and raw HTTP for the error cases)."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from openai import OpenAI

from tests.support.gateways import auth
from tests.support.processes import MODEL_ID, wait_for_workers

PROMPT = "The three primary colours are"


@pytest.mark.slow
def test_completions_and_embeddings_with_the_real_worker(gateway_process,
                                                          worker_process) -> None:
    gateway = gateway_process()
    wallet, key = asyncio.run(gateway.funded_key(10_000_000))
    wait_for_workers(gateway.url, 1, timeout=120, process=worker_process(gateway.url))
    client = OpenAI(base_url=gateway.url + "/v1", api_key=key)

    plain = client.completions.create(model=MODEL_ID, prompt=PROMPT, max_tokens=12,
                                      temperature=0)
    assert plain.object == "text_completion" and plain.id.startswith("cmpl-")
    text = plain.choices[0].text
    assert text and plain.choices[0].finish_reason in ("length", "stop")
    assert plain.usage is not None and 0 < plain.usage.completion_tokens <= 12

    chunks = list(client.completions.create(
        model=MODEL_ID, prompt=PROMPT, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same text, token by token
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == (
        plain.usage.completion_tokens)
    echoed = client.completions.create(model=MODEL_ID, prompt=PROMPT, max_tokens=4,
                                       temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(PROMPT)

    # the openai package asks for base64 vectors and decodes them
    vectors = client.embeddings.create(model=MODEL_ID, input=["red", "a green apple"])
    assert [d.index for d in vectors.data] == [0, 1]
    for item in vectors.data:
        assert len(item.embedding) == 576
        assert math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-3)
    assert vectors.usage.prompt_tokens > 0
    floats = httpx.post(f"{gateway.url}/v1/embeddings", headers=auth(key), timeout=60,
                        json={"model": MODEL_ID, "input": "red", "encoding_format": "float"})
    assert floats.status_code == 200
    first = floats.json()["data"][0]["embedding"]
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(
        first, vectors.data[0].embedding, strict=True))

    for path, body, words in [
        ("/v1/completions", {"model": MODEL_ID, "prompt": ["a", "b"]}, "one prompt"),
        ("/v1/completions", {"model": MODEL_ID, "prompt": "a", "suffix": "b"}, "not supported"),
        ("/v1/completions", {"model": MODEL_ID, "prompt": "a", "echo": True, "logprobs": 2},
         "not scored"),
        ("/v1/completions", {"model": MODEL_ID, "prompt": "a", "logprobs": 21}, "logprobs"),
        ("/v1/embeddings", {"model": MODEL_ID, "input": ""}, "non-empty"),
        ("/v1/embeddings", {"model": MODEL_ID, "input": "a", "dimensions": 8}, "dimensions"),
        ("/v1/embeddings", {"model": MODEL_ID, "input": [[1, 2]]}, "input"),
    ]:
        refused = httpx.post(gateway.url + path, headers=auth(key), json=body, timeout=30)
        assert refused.status_code == 400 and words in refused.text, refused.text

    gateway.assert_paid_from(wallet, 10_000_000)
