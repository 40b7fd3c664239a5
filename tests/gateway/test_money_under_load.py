"""Money under concurrency and crashes: no overdraft, nothing lost, nothing stuck."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest

from tests.support.gateways import RunningGateway, auth
from tests.support.scripted_worker import ScriptedWorker

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def test_fifty_concurrent_requests_on_credit_for_ten(gw: RunningGateway) -> None:
    account = await gw.account(credit=10 * 1000)
    await gw.worker(slots=8, token_delay_s=0.01)
    lowest = []

    async def watch_balance() -> None:
        while True:
            lowest.append((await gw.store.balance(account.wallet)).balance)
            await asyncio.sleep(0.001)

    watcher = asyncio.create_task(watch_balance())
    async with httpx.AsyncClient(base_url=gw.url, timeout=60,
                                 limits=httpx.Limits(max_connections=50)) as http:
        responses = await asyncio.gather(*(
            http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
            for _ in range(50)
        ))
    watcher.cancel()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [402] * 40
    assert min(lowest) >= 0
    balance = await gw.store.balance(account.wallet)
    assert (balance.balance, balance.reserved, balance.total_spent) == (0, 0, 10_000)
    audit = await gw.store.audit()
    assert audit.ok, audit
    assert audit.worker_earnings + audit.treasury_fees == 10_000


@pytest.mark.slow
async def test_sigkill_during_streams_leaves_nothing_stuck(gateway_process) -> None:
    gateway = gateway_process()
    wallet, key = await gateway.funded_key(1_000_000)
    store = await gateway.open_ledger()
    worker = await ScriptedWorker(gateway.url, token_delay_s=0.05,
                                  reply=" ".join(["tick"] * 400), slots=32).start()
    streamed = asyncio.Event()
    counts = [0] * 20

    async def stream(i: int) -> None:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            async with http.stream("POST", "/v1/chat/completions", headers=auth(key),
                                   json={**CHAT, "stream": True}) as response:
                async for line in response.aiter_lines():
                    counts[i] += line.startswith("data:")
                    if min(counts) > 3:
                        streamed.set()

    tasks = [asyncio.create_task(stream(i)) for i in range(20)]
    await asyncio.wait_for(streamed.wait(), 30)
    during = await store.audit()
    assert during.open_reservations > 0 and during.ok
    os.kill(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait(10)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, httpx.HTTPError) for r in results)
    await worker.stop()

    restarted = gateway_process(gateway.settings)
    audit = await store.audit()
    assert audit.ok, audit
    assert audit.reserved == 0 and audit.open_reservations == 0
    balance = await store.balance(wallet)
    assert balance.balance + balance.total_spent == 1_000_000
    async with httpx.AsyncClient(base_url=restarted.url) as http:
        assert (await http.get("/health")).status_code == 200
    await store.close()
