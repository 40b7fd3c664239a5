"""Three gateway replicas as processes on one PostgreSQL ledger, one Redis and one chain,
workers attached to the first, clients spread over all three: money, limits and revocations
hold across them, and SIGKILL of the workers' replica loses nothing."""

from __future__ import annotations

import asyncio
import time

import httpx
import redis.asyncio as aioredis

from nexus_app.client.gateway import GatewayClient
from tests.support.gateways import auth
from tests.support.replica_processes import ReplicaSet
from tests.support.replicas import CHAT, stream_chat

PRICE = 1000  # scripted-model's per-request price: what one chat reserves and costs
LONG_REPLY = " ".join(["tick"] * 200)


async def test_fifty_chats_on_credit_for_ten_serve_at_most_ten(replicas: ReplicaSet) -> None:
    await replicas.attach_workers(1, "--slots", "64")
    wallet, key, _ = await replicas.funded_key(10 * PRICE)
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(*(
            http.post(f"{replicas.url(i % 3)}/v1/chat/completions", headers=auth(key),
                      json=CHAT) for i in range(50)))
    served = sum(a.status_code == 200 for a in answers)
    assert {a.status_code for a in answers} <= {200, 402}, [a.text for a in answers]
    assert 1 <= served <= 10
    async with replicas.ledger() as store:
        balance = await store.balance(wallet)
        assert (await store.audit()).ok
    assert balance.reserved == 0 and balance.balance == (10 - served) * PRICE >= 0
    assert balance.total_spent == served * PRICE  # each served chat charged once


async def _fresh_window(client: aioredis.Redis, needed_s: int = 20) -> None:
    """Wait, if need be, until Redis's clock has `needed_s` left in the current minute."""
    seconds, _ = await client.time()
    if seconds % 60 > 60 - needed_s:
        await asyncio.sleep(60 - seconds % 60 + 0.2)


async def test_a_key_with_rpm_60_gets_60_a_minute_across_three(
        replicas: ReplicaSet, shared: tuple[aioredis.Redis, str]) -> None:
    _, _, session = await replicas.funded_key(0)
    async with GatewayClient(replicas.url(0), token=session) as client:
        key = (await client.create_key("limited", rpm=60)).key
    await _fresh_window(shared[0])
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(*(
            http.get(f"{replicas.url(i % 3)}/v1/balance", headers=auth(key))
            for i in range(90)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 60 and codes.count(429) == 30
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)


async def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_100_ms(
        replicas: ReplicaSet) -> None:
    _, key, session = await replicas.funded_key(0)
    async with httpx.AsyncClient(timeout=10) as http:
        for url in replicas.urls:  # every replica has the key in its cache
            assert (await http.get(f"{url}/v1/balance", headers=auth(key))).status_code == 200
        async with GatewayClient(replicas.url(0), token=session) as client:
            [view] = await client.list_keys()
            await client.revoke_key(view.id)
        revoked = time.monotonic()
        for url in replicas.urls[1:]:
            while (await http.get(f"{url}/v1/balance", headers=auth(key))).status_code == 200:
                assert time.monotonic() - revoked < 0.1, f"{url} still accepts the key"
    assert time.monotonic() - revoked < 0.1


async def test_sigkill_of_the_workers_replica_during_twenty_streams(
        replicas: ReplicaSet) -> None:
    await replicas.attach_workers(2, "--slots", "16", "--token-delay", "0.05",
                                  "--reply", LONG_REPLY)
    credit = 100 * PRICE
    wallet, key, _ = await replicas.funded_key(credit)
    streams = [asyncio.create_task(stream_chat(replicas.url(i % 3), key)) for i in range(20)]
    async with replicas.ledger() as store:
        while (await store.balance(wallet)).reserved < 20 * PRICE:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the streams are under way
    replicas.kill(0)
    ends = await asyncio.wait_for(asyncio.gather(*streams, return_exceptions=True), 30)
    survivors = [end for i, end in enumerate(ends) if i % 3 != 0]
    # on the replicas alive: every client gets an answer or an error event
    assert all(isinstance(end, tuple) and end[1] in ("done", "error") for end in survivors)
    deadline = time.monotonic() + 15  # the dead replica's lease, then the leader's round
    async with replicas.ledger() as store:
        while (balance := await store.balance(wallet)).reserved:
            assert time.monotonic() < deadline, "reservations left open"
            await asyncio.sleep(0.2)
        assert (await store.audit()).ok
    assert balance.balance + balance.total_spent == credit
    async with httpx.AsyncClient(timeout=30) as http:  # the workers are back, on replica 1
        for _ in range(100):
            health = (await http.get(f"{replicas.url(1)}/health")).json()
            if health["workers_online"] == 2:
                break
            await asyncio.sleep(0.1)
        assert health["workers_online"] == 2
        after = await http.post(f"{replicas.url(2)}/v1/chat/completions",
                                headers=auth(key), json={**CHAT, "max_tokens": 5})
        assert after.status_code == 200
