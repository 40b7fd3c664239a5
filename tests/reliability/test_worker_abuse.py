"""Abuse controls for workers: a cap on connections per payout wallet, a cooldown and then a
pause for a wallet whose jobs keep failing, and a hold on new workers' earnings."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import websockets
from solders.keypair import Keypair

from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.gateway.workers import health as worker_health
from nexus_app.gateway.workers.health import COOLING_DOWN, PAUSED, WorkerHealth
from nexus_app.protocol import Ready, parse_gateway_frame
from tests.support.api import CHAT
from tests.support.deposits import depositor
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.worker_socket import closed_reason, handshake, ws_url

PRICE = 1000  # scripted-model's per-request price in make_settings


async def test_a_wallet_holds_at_most_the_configured_worker_connections(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, worker_connections_per_wallet=2)) as gw:
        keypair = Keypair()
        first = await gw.worker(keypair=keypair)
        await gw.worker(keypair=keypair)
        async with websockets.connect(ws_url(gw)) as ws:
            await handshake(ws, keypair)
            code, reason = await closed_reason(ws)
        assert code == 1008 and "2 worker connections" in reason
        assert len(gw.gateway.coordinator.workers_for(str(keypair.pubkey()))) == 2

        await gw.worker()  # another wallet is not limited by this one
        await first.stop()
        async with websockets.connect(ws_url(gw)) as ws:  # a freed place can be taken again
            await handshake(ws, keypair)
            assert isinstance(parse_gateway_frame(await ws.recv()), Ready)


async def chat(gw: RunningGateway, key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        return await http.post("/v1/chat/completions", json=CHAT, headers=auth(key))


async def test_a_failing_worker_is_cooled_down_then_paused(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, dispatch_attempts=1, worker_failures_before_cooldown=2, worker_cooldown_s=0.5,
        worker_cooldowns_before_pause=2, worker_pause_s=60,
    )
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=100_000)
        health = gw.gateway.coordinator.health
        keypair = Keypair()
        failing = await gw.worker(fail_with="internal_error", keypair=keypair)

        for _ in range(2):
            assert (await chat(gw, account.api_key)).status_code == 503
        assert health.state(failing.wallet) == COOLING_DOWN
        refused = await chat(gw, account.api_key)
        assert refused.status_code == 503 and "cooling down" in refused.json()["error"]["message"]
        assert len(failing.jobs) == 2  # no job reached it while it cooled down

        await asyncio.sleep(0.6)  # the cooldown ends; two more failures pause it
        for _ in range(2):
            assert (await chat(gw, account.api_key)).status_code == 503
        assert len(failing.jobs) == 4 and health.state(failing.wallet) == PAUSED
        async with httpx.AsyncClient(base_url=gw.url) as http:
            stats = (await http.get("/v1/network/stats")).json()
        assert (stats["workers_online"], stats["workers_benched"]) == (1, 1)
        await asyncio.sleep(0.6)
        assert (await chat(gw, account.api_key)).status_code == 503
        assert len(failing.jobs) == 4

        await failing.stop()  # reconnecting does not lift the pause: it is the wallet's
        again = await gw.worker(fail_with="internal_error", keypair=keypair)
        healthy = await gw.worker()
        assert (await chat(gw, account.api_key)).status_code == 200
        assert (len(again.jobs), len(healthy.jobs)) == (0, 1)

        balance = await gw.store.balance(account.wallet)  # failed requests cost nothing
        assert (balance.balance, balance.reserved) == (100_000 - PRICE, 0)
        assert (await gw.store.audit()).ok


async def test_retry_after_of_a_cooldown_is_the_time_it_has_left(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, dispatch_attempts=1, worker_failures_before_cooldown=1,
                             worker_cooldown_s=60, worker_cooldowns_before_pause=5)
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=100_000)
        await gw.worker(fail_with="internal_error")
        assert (await chat(gw, account.api_key)).status_code == 503  # the failure: benched
        refused = await chat(gw, account.api_key)
        assert refused.status_code == 503 and "cooling down" in refused.json()["error"]["message"]
        assert 55 <= int(refused.headers["retry-after"]) <= 60


def test_a_job_served_clears_the_failure_record() -> None:
    now = [0.0]
    health = WorkerHealth(failures_before_cooldown=2, cooldown_s=10, cooldowns_before_pause=2,
                          pause_s=100, clock=lambda: now[0])
    assert health.failed("w") is None
    health.succeeded("w")
    assert health.failed("w") is None  # the run of failures started again
    assert health.failed("w") == 10 and health.state("w") == COOLING_DOWN
    now[0] = 11
    assert health.available("w")
    health.succeeded("w")
    health.failed("w")
    assert health.failed("w") == 10  # a cooldown again, not a pause: the count was cleared


def test_failure_records_stay_bounded_but_keep_benched_wallets(monkeypatch) -> None:
    monkeypatch.setattr(worker_health, "MAX_RECORDS", 100)
    health = WorkerHealth(failures_before_cooldown=2, cooldown_s=10, cooldowns_before_pause=2,
                          pause_s=100, clock=lambda: 0.0)
    health.failed("benched")
    health.failed("benched")
    for number in range(1000):  # a wallet per failure: keypairs cost nothing
        health.failed(f"wallet-{number}")
    assert len(health._records) <= 100
    assert health.state("benched") == COOLING_DOWN


@pytest.mark.parametrize("starts", [False, True], ids=["silent", "says-it-started"])
async def test_a_stalled_worker_loses_the_job_to_another(tmp_path: Path, starts: bool) -> None:
    """Also when it says it started the job (an empty chunk): that is no output, and the
    first-token timeout still applies."""
    settings = make_settings(tmp_path, first_token_timeout_s=0.5, job_timeout_s=20)
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=100_000)
        stalled = await gw.worker(first_token_delay_s=60, starts=starts)  # picked first
        healthy = await gw.worker()
        started = time.monotonic()
        response = await chat(gw, account.api_key)
        assert response.status_code == 200 and time.monotonic() - started < 5
        assert len(stalled.jobs) == len(healthy.jobs) == 1
        for _ in range(50):
            if stalled.cancelled:
                break
            await asyncio.sleep(0.02)
        assert stalled.cancelled == {stalled.jobs[0].job_id}
        balance = await gw.store.balance(account.wallet)
        assert (balance.balance, balance.reserved) == (100_000 - PRICE, 0)  # billed once


@pytest.mark.slow
async def test_new_workers_earnings_are_held_then_claimable(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, worker_earnings_hold_s=2)) as gw:
        user = await depositor(gw, "10")  # a real deposit funds the treasury's payouts
        await user.client.deposit(user.keypair, "1")
        key = user.account.api_key
        worker = await gw.worker()
        assert (await chat(gw, key)).status_code == 200
        async with GatewayClient(gw.url) as client:
            await client.sign_in(worker.keypair)
            me = await client.worker_earnings()
            assert me.pending == 800 and me.claimable_from > time.time()
            with pytest.raises(ClientError) as held:
                await client.claim()
            assert held.value.status == 409 and "held" in held.value.message
            assert (await client.worker_earnings()).pending == 800  # still there

            await asyncio.sleep(me.claimable_from - time.time() + 0.1)
            assert (await client.claim(worker.keypair)).amount == 800  # creates its account
            # the hold is for new workers: later earnings are claimable at once
            assert (await chat(gw, key)).status_code == 200
            assert (await client.claim(worker.keypair)).amount == 800
        assert (await gw.store.audit()).ok
