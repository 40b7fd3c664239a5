"""A worker wallet's earnings by hour (`GET /v1/workers/me/earnings`), read from the ledger's
worker_earning entries: the terminal app's earnings plot."""

from __future__ import annotations

import time

import httpx
import pytest

from nexus_app.client.gateway import ClientError, GatewayClient
from tests.support.deposits import depositor
from tests.support.gateways import RunningGateway, auth

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
WORKER_SHARE = 800  # of the scripted model's 1000 base units per request


def add_earning(gw: RunningGateway, wallet: str, amount: int, at: float) -> None:
    """A worker_earning entry at a chosen time (the ledger stamps its own entries now)."""
    gw.store.db.execute(  # type: ignore[attr-defined]
        "INSERT INTO ledger (at, kind, wallet, amount, ref) VALUES (?, 'worker_earning', ?, ?,"
        " 'earlier job')", (at, wallet, amount))


async def test_earnings_are_summed_by_hour_with_their_jobs(gw: RunningGateway) -> None:
    user = await depositor(gw, "100")
    await user.client.deposit(user.keypair, "25")
    worker = await gw.worker()
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        for _ in range(3):
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(user.account.api_key))
            assert response.status_code == 200, response.text
    now = time.time()
    this_hour = int(now) // 3600 * 3600
    add_earning(gw, worker.wallet, 500, this_hour - 3 * 3600 + 10)
    add_earning(gw, worker.wallet, 700, this_hour - 3 * 3600 + 20)
    add_earning(gw, "SomeOtherWorkerWallet1111111111111111111111", 9, now)

    client = GatewayClient(gw.url)
    await client.sign_in(worker.keypair)
    day = await client.earnings_history(24)
    assert [(h.hour, h.earned, h.jobs) for h in day.data] == [
        (this_hour - 3 * 3600, 1200, 2), (this_hour, 3 * WORKER_SHARE, 3)]
    assert day.wallet == worker.wallet and day.since == this_hour - 23 * 3600
    assert day.data[0].earned_display == "0.001200"
    last_hour = await client.earnings_history(1)
    assert [(h.hour, h.jobs) for h in last_hour.data] == [(this_hour, 3)]
    with pytest.raises(ClientError) as too_far:
        await client.earnings_history(24 * 32)
    assert too_far.value.status == 400
    await client.aclose()
