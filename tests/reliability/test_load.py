"""Load: 200 concurrent streaming chats through one gateway process and four workers, in
rounds. The workers are scripted TEST DOUBLES (`tests/support/scripted_worker.py`, each in
a process of its own) that answer from a script at a fixed pace: what is measured is the
gateway, not the model. Every stream must complete; the ledger invariant must hold after every
round, with no reservation left; and the gateway's memory must come back to where it was after
the first round, not grow with each one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.gateways import auth, make_settings
from tests.support.processes import (
    GatewayProcess,
    rss_bytes,
    start_scripted_worker,
    wait_for_scripted,
)

pytestmark = pytest.mark.slow

STREAMS = 200
ROUNDS = 4
WORKERS = 4
REPLY = " ".join(f"word{i}" for i in range(40))
MEMORY_GROWTH_LIMIT = 24 * 2**20  # bytes, from the first round's end to the last's
CHAT = {"model": "scripted-model", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Count to forty."}]}


async def stream_once(http: httpx.AsyncClient, key: str) -> int:
    """One streamed chat to its end; returns the completion tokens it was billed for."""
    usage = None
    async with http.stream("POST", "/v1/chat/completions", json=CHAT,
                           headers=auth(key)) as response:
        assert response.status_code == 200, await response.aread()
        done = False
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: {"):
                usage = orjson.loads(line[6:]).get("usage") or usage
    assert done and usage is not None
    return int(usage["completion_tokens"])


async def test_200_concurrent_streams_in_rounds(gateway_process, scripted_workers,
                                               tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", rate_limit_rpm=1_000_000,
                             rate_limit_tpm=100_000_000, queue_max=1024)
    gateway: GatewayProcess = gateway_process(settings)
    for _ in range(WORKERS):
        scripted_workers.append(
            start_scripted_worker(gateway.url, "--slots", "64", "--token-delay", "0.01",
                                  "--reply", REPLY))
    await wait_for_scripted(gateway.url, WORKERS)
    wallet, key = await gateway.funded_key(10**12)
    ledger = await gateway.open_ledger()
    idle = rss_bytes(gateway.process.pid)
    memory, rates = [], []
    limits = httpx.Limits(max_connections=STREAMS + 10)
    for _ in range(ROUNDS):  # each round a new crowd of clients, with connections of its own
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as http:
            started = time.monotonic()
            tokens = await asyncio.gather(*(stream_once(http, key) for _ in range(STREAMS)))
            rates.append(STREAMS / (time.monotonic() - started))
            assert tokens == [40] * STREAMS
            audit = await ledger.audit()
            assert audit.ok and audit.open_reservations == 0 and audit.reserved == 0, audit
            await asyncio.sleep(0.5)
            memory.append(rss_bytes(gateway.process.pid))
    spent, balance = ledger.db.execute(
        "SELECT total_spent, balance FROM accounts WHERE account = ?", (wallet,)).fetchone()
    assert spent + balance == 10**12 and spent > 0
    await ledger.close()
    growth = memory[-1] - memory[0]
    print(f"\n{STREAMS} concurrent streams x {ROUNDS} rounds: "
          f"{', '.join(f'{rate:.0f}' for rate in rates)} streams/s; gateway RSS "
          f"{idle / 2**20:.0f} MiB idle, then {', '.join(f'{m / 2**20:.0f}' for m in memory)} "
          "MiB after each round")
    assert growth < MEMORY_GROWTH_LIMIT, f"gateway memory grew {growth / 2**20:.0f} MiB"
