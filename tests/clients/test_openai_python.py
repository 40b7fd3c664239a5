"""The official `openai` package against a real gateway with a connected (scripted) worker."""

from __future__ import annotations

import time

import openai
import pytest

from tests.support.gateways import RunningGateway


@pytest.fixture
async def client(gw: RunningGateway):
    account = await gw.account(credit=100_000)
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=account.api_key) as client:
        client.account = account  # type: ignore[attr-defined]
        yield client


async def test_lists_models(gw, client) -> None:
    await gw.worker()
    models = [m.id async for m in client.models.list()]
    assert models == ["scripted-model"]


async def test_completes_a_chat_with_usage_and_exact_billing(gw, client) -> None:
    worker = await gw.worker()
    before = (await gw.store.balance(client.account.wallet)).balance
    completion = await client.chat.completions.create(
        model="scripted-model", messages=[{"role": "user", "content": "Say hello"}]
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == worker.reply
    assert choice.finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.usage.prompt_tokens == worker.prompt_tokens
    assert completion.usage.completion_tokens == len(worker.tokens())
    assert completion.usage.total_tokens == worker.prompt_tokens + len(worker.tokens())
    after = (await gw.store.balance(client.account.wallet)).balance
    assert before - after == 1000  # the configured per-request price of scripted-model
    assert (await gw.store.worker_earnings(worker.wallet)).earned == 800
    assert (await gw.store.audit()).ok


async def test_streams_chunks_before_the_reply_is_finished(gw, client) -> None:
    worker = await gw.worker(token_delay_s=0.1)
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model="scripted-model", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    )
    arrivals, text, usage, reasons = [], [], None, []
    async for chunk in stream:
        arrivals.append(time.monotonic() - started)
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    total_tokens = len(worker.tokens())
    assert "".join(text) == worker.reply
    assert reasons[-1] == "stop" and set(reasons[:-1]) == {None}
    # the first text arrived long before the last token was produced
    assert arrivals[1] < arrivals[-1] - 0.1 * (total_tokens - 3)
    assert usage is not None and usage.completion_tokens == total_tokens
    assert usage.prompt_tokens == worker.prompt_tokens
    assert (await gw.store.balance(client.account.wallet)).balance == 100_000 - 1000


async def test_errors_surface_as_openai_exceptions(gw, client) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="missing", messages=[
            {"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError) as info:  # 503: no worker online
        await client.with_options(max_retries=0).chat.completions.create(
            model="scripted-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="scripted-model", messages=[],)
