"""Cross-replica jobs: a request taken by replica B whose worker is attached to replica A is
served through Redis, its chunks in order, billed once on B; a cancel travels back to A's
worker; losing A ends a started stream with an error event and a full refund, and a job
with no first token yet is retried on another worker."""

from __future__ import annotations

import asyncio
import time

from tests.support.chain_node import wait_until
from tests.support.gateways import RunningGateway
from tests.support.replicas import stream_chat
from tests.support.scripted_worker import DEFAULT_REPLY, ScriptedWorker

PRICE = 1000  # scripted-model's per-request price (tests/support/gateways.py)


async def remote_worker(a: RunningGateway, b: RunningGateway, **kwargs: object) -> ScriptedWorker:
    """A worker attached to `a`, once `b` sees it in the registry."""
    worker = await a.worker(**kwargs)
    await wait_until(lambda: _sees(b, worker), timeout=5)
    return worker


async def _sees(replica: RunningGateway, worker: ScriptedWorker) -> bool:
    return worker.worker_id in replica.gateway.coordinator.remote


async def test_a_job_taken_by_b_is_served_by_as_worker_in_order_and_billed_once_on_b(
        pair: list[RunningGateway]) -> None:
    a, b = pair
    worker = await remote_worker(a, b)
    account = await b.account(credit=10 * PRICE)
    texts, ended = await stream_chat(b.url, account.api_key)
    assert ended == "done" and "".join(texts) == DEFAULT_REPLY
    assert texts == worker.tokens()  # every chunk, in the order sent
    assert (await b.store.balance(account.wallet)).balance == 9 * PRICE
    assert (await b.store.worker_earnings(worker.wallet)).earned > 0  # the wallet paid on b
    assert (await a.store.worker_earnings(worker.wallet)).earned == 0  # and nothing on a
    assert not a.gateway.coordinator.workers[worker.worker_id].jobs  # the slot is free
    earned = (await b.store.worker_earnings(worker.wallet)).earned
    await wait_until(lambda: _told(worker, earned), timeout=5)  # by b, through a


async def _told(worker: ScriptedWorker, earned: int) -> bool:
    return worker.earned == earned


async def test_a_cancel_travels_back_to_the_worker(pair: list[RunningGateway]) -> None:
    a, b = pair
    worker = await remote_worker(a, b, token_delay_s=0.05)
    account = await b.account(credit=10 * PRICE)
    texts, ended = await stream_chat(b.url, account.api_key, stop_after=2)
    assert ended == "left" and len(texts) == 2
    await wait_until(lambda: _cancelled(worker), timeout=5)
    assert worker.cancelled == {worker.jobs[0].job_id}
    await wait_until(lambda: _settled(b, account.wallet), timeout=5)
    # billed once, on b, for what was delivered
    assert (await b.store.balance(account.wallet)).balance == 9 * PRICE


async def _cancelled(worker: ScriptedWorker) -> bool:
    return bool(worker.cancelled)


async def _settled(replica: RunningGateway, wallet: str) -> bool:
    return (await replica.store.balance(wallet)).reserved == 0


def crash(replica: RunningGateway) -> None:
    """Stop `replica` sharing anything at once, as SIGKILL would: no goodbye to Redis."""
    assert replica.gateway.replica is not None
    for task in replica.gateway.replica._tasks:
        task.cancel()
    for task in list(replica.gateway.replica.remote._tasks):
        task.cancel()


async def test_losing_a_mid_stream_ends_it_with_an_error_event_and_a_full_refund(
        pair: list[RunningGateway]) -> None:
    a, b = pair
    await remote_worker(a, b, token_delay_s=0.1, reply=" ".join(["tick"] * 200))
    account = await b.account(credit=10 * PRICE)
    streaming = asyncio.create_task(stream_chat(b.url, account.api_key))
    await wait_until(lambda: _reserved(b, account.wallet), timeout=5)
    await asyncio.sleep(0.5)  # a few chunks have arrived
    crash(a)
    crashed = time.monotonic()
    texts, ended = await asyncio.wait_for(streaming, 15)
    assert ended == "error" and texts  # it had started
    assert time.monotonic() - crashed < 5  # the registry entry's expiry, and a round
    balance = await b.store.balance(account.wallet)
    assert (balance.balance, balance.reserved) == (10 * PRICE, 0)


async def _reserved(replica: RunningGateway, wallet: str) -> bool:
    return (await replica.store.balance(wallet)).reserved > 0


async def test_a_job_without_a_first_token_is_retried_on_another_worker(
        pair: list[RunningGateway]) -> None:
    a, b = pair
    await remote_worker(a, b, first_token_delay_s=30)
    account = await b.account(credit=10 * PRICE)
    streaming = asyncio.create_task(stream_chat(b.url, account.api_key))
    await wait_until(lambda: _reserved(b, account.wallet), timeout=5)
    local = await b.worker()  # b's own worker, free but second in line while a's was free
    crash(a)
    texts, ended = await asyncio.wait_for(streaming, 15)
    assert ended == "done" and "".join(texts) == DEFAULT_REPLY
    assert len(local.jobs) == 1
    assert (await b.store.balance(account.wallet)).balance == 9 * PRICE
