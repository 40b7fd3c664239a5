"""Processes killed with SIGKILL: the gateway under load (then restarted: the real worker node
reconnects by itself), and workers in the middle of jobs (requests refunded, or retried on
another worker when no token had arrived). The ledger invariant is checked after each."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.gateways import auth, make_settings, running_gateway
from tests.support.processes import (
    MODEL_ID,
    start_scripted_worker,
    wait_for_scripted,
    wait_for_workers,
)

pytestmark = pytest.mark.slow

LONG_REPLY = " ".join(["tick"] * 400)
SCRIPTED = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


class ChunkCount(asyncio.Event):
    """Set once `target` stream chunks have arrived, over all streams."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target, self.count = target, 0

    def add(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.set()


async def stream_until_killed(http: httpx.AsyncClient, key: str, body: dict,
                              on_data: Callable[[], None]) -> str:
    """Stream one chat; returns how it ended: `done`, `error event` or `cut`."""
    try:
        async with http.stream("POST", "/v1/chat/completions", headers=auth(key),
                               json={**body, "stream": True}) as response:
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    return "done"
                if line.startswith('data: {"error"'):
                    return "error event"
                if line.startswith("data:"):
                    on_data()
    except httpx.HTTPError:
        return "cut"
    return "cut"


async def test_gateway_sigkill_under_load_and_restart(gateway_process, worker_process,
                                                       scripted_workers, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    gateway = gateway_process(settings)
    node = worker_process(gateway.url, NEXUS_RECONNECT_MAX_S="1")  # the real worker node
    scripted_workers.append(start_scripted_worker(
        gateway.url, "--slots", "32", "--token-delay", "0.05", "--reply", LONG_REPLY))
    wait_for_workers(gateway.url, 1, timeout=120, process=node)
    await wait_for_scripted(gateway.url, 1)
    credit = 10_000_000
    wallet, key = await gateway.funded_key(credit)
    ledger = await gateway.open_ledger()

    enough = ChunkCount(100)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        bodies = [SCRIPTED] * 20 + [{"model": MODEL_ID, "max_tokens": 200, "messages": [
            {"role": "user", "content": "Tell a long story."}]}] * 2
        streams = [asyncio.create_task(stream_until_killed(http, key, body, enough.add))
                   for body in bodies]
        await asyncio.wait_for(enough.wait(), 60)
        assert (await ledger.audit()).open_reservations > 0
        os.kill(gateway.process.pid, signal.SIGKILL)
        gateway.process.wait(10)
        endings = await asyncio.gather(*streams)
    assert set(endings) == {"cut"}

    restarted = gateway_process(settings)  # same port and data dir
    audit = await ledger.audit()
    assert audit.ok and audit.reserved == 0 and audit.open_reservations == 0, audit
    wait_for_workers(restarted.url, 1, timeout=30, process=node)  # it came back by itself
    async with httpx.AsyncClient(base_url=restarted.url, timeout=120) as http:
        after = await http.post("/v1/chat/completions", headers=auth(key), json={
            "model": MODEL_ID, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
    assert after.status_code == 200, after.text
    spent, balance = ledger.db.execute(
        "SELECT total_spent, balance FROM accounts WHERE account = ?", (wallet,)).fetchone()
    assert spent > 0 and spent + balance == credit
    assert (await ledger.audit()).ok
    await ledger.close()


async def test_worker_sigkill_mid_stream_refunds_every_request(scripted_workers,
                                                              tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        account = await gw.account(credit=100_000)
        worker = start_scripted_worker(gw.url, "--slots", "8", "--token-delay", "0.05",
                                       "--reply", LONG_REPLY)
        scripted_workers.append(worker)
        await wait_for_scripted(gw.url, 1)
        enough = ChunkCount(40)
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            streams = [asyncio.create_task(
                stream_until_killed(http, account.api_key, SCRIPTED, enough.add)) for _ in range(8)]
            await asyncio.wait_for(enough.wait(), 30)
            worker.send_signal(signal.SIGKILL)
            endings = await asyncio.gather(*streams)
        assert endings == ["error event"] * 8  # each stream says it failed, in OpenAI's shape
        balance = await gw.store.balance(account.wallet)
        assert (balance.balance, balance.reserved, balance.total_spent) == (100_000, 0, 0)
        assert (await gw.store.audit()).ok


async def test_worker_sigkill_before_the_first_token_is_retried(scripted_workers,
                                                               tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        account = await gw.account(credit=100_000)
        silent = start_scripted_worker(gw.url, "--first-token-delay", "60")
        scripted_workers.append(silent)
        await wait_for_scripted(gw.url, 1)
        scripted_workers.append(start_scripted_worker(gw.url))
        await wait_for_scripted(gw.url, 2)
        coordinator = gw.gateway.coordinator
        first = min(coordinator.workers.values(), key=lambda worker: worker.connected_at)

        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            request = asyncio.create_task(
                http.post("/v1/chat/completions", headers=auth(account.api_key), json=SCRIPTED))
            for _ in range(100):
                if first.jobs:
                    break
                await asyncio.sleep(0.02)
            assert first.jobs  # the silent worker holds the job
            silent.send_signal(signal.SIGKILL)
            response = await request
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"]
        balance = await gw.store.balance(account.wallet)
        assert (balance.balance, balance.reserved) == (100_000 - 1000, 0)  # billed once
        assert (await gw.store.audit()).ok
