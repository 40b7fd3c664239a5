"""Redis and PostgreSQL restarted under load (servers of the test's own): what the README
says happens, and nothing lost or charged twice.

Redis down: money is unaffected (it is in the ledger); each replica counts rate limits
alone and serves with its own workers only, so a replica without workers answers 503 with
Retry-After until Redis is back. PostgreSQL down: every request that needs the ledger is a
503 with Retry-After, and the gateway recovers by itself when it returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.gateways import auth
from tests.support.own_servers import own_postgres, own_redis
from tests.support.redis_server import new_prefix
from tests.support.replica_processes import ReplicaSet, replica_set
from tests.support.replicas import CHAT

PRICE = 1000
CREDIT = 100_000 * PRICE  # more than the load can spend
UNLIMITED = 10**6  # requests a minute per key: the load is not rate-limited


async def chat_load(replicas: ReplicaSet, key: str, seconds: float,
                    clients: int = 6) -> list[tuple[float, int, str | None]]:
    """Chats from `clients` loops over the replicas for `seconds`: (when, status,
    Retry-After) of each answer."""
    answers: list[tuple[float, int, str | None]] = []
    started = time.monotonic()

    async def client(index: int, http: httpx.AsyncClient) -> None:
        turn = index
        while time.monotonic() - started < seconds:
            url = replicas.urls[turn % len(replicas.urls)]
            turn += 1
            try:
                answer = await http.post(f"{url}/v1/chat/completions", headers=auth(key),
                                         json={**CHAT, "max_tokens": 8})
            except httpx.HTTPError as exc:  # no answer: `type(exc)` in place of Retry-After
                answers.append((time.monotonic() - started, 0, f"{type(exc).__name__} {url}"))
                continue
            answers.append((time.monotonic() - started, answer.status_code,
                            answer.headers.get("retry-after")))
            if answer.status_code != 200:
                await asyncio.sleep(0.1)

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return answers


async def during(seconds: float, action: Callable[[], None]) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(action)


async def assert_charged_once(replicas: ReplicaSet, wallet: str, served: int) -> None:
    """Every served chat charged once, nothing else, nothing left reserved."""
    async with replicas.ledger() as store:
        deadline = time.monotonic() + 15
        while (balance := await store.balance(wallet)).reserved:
            assert time.monotonic() < deadline, "reservations left open"
            await asyncio.sleep(0.2)
        assert (await store.audit()).ok
    assert balance.total_spent == served * PRICE
    assert balance.balance == CREDIT - served * PRICE


async def test_redis_restarted_mid_load(tmp_path: Path, ledger_schema: str) -> None:
    with own_redis() as redis:
        async with replica_set(tmp_path, ledger_schema, new_prefix(), redis_url=redis.url,
                               rate_limit_rpm=UNLIMITED) as replicas:
            await replicas.attach_workers(1, "--slots", "64")
            wallet, key, _ = await replicas.funded_key(CREDIT)
            load = asyncio.create_task(chat_load(replicas, key, 9))
            await during(1.5, redis.stop)
            await during(2.5, redis.start)
            answers = await load
    codes = {code for _, code, _ in answers}
    assert codes <= {200, 503}, [a for a in answers if a[1] not in (200, 503)]
    assert all(after for _, code, after in answers if code == 503)  # with Retry-After
    served = sum(code == 200 for _, code, _ in answers)
    down = [code for when, code, _ in answers if 2 < when < 3.8]
    assert 200 in down  # the workers' own replica kept serving while Redis was down
    late = [code for when, code, _ in answers if when > 7.5]
    assert late and set(late) == {200}  # all replicas serve again once it is back
    await assert_charged_once(replicas, wallet, served)


async def test_postgresql_restarted_mid_load(tmp_path: Path) -> None:
    with own_postgres() as postgres:
        async with replica_set(tmp_path, postgres.url, new_prefix(),
                               rate_limit_rpm=UNLIMITED) as replicas:
            await replicas.attach_workers(1, "--slots", "64")
            wallet, key, _ = await replicas.funded_key(CREDIT)
            load = asyncio.create_task(chat_load(replicas, key, 9))
            await during(1.5, postgres.stop)
            await during(2.0, postgres.start)
            answers = await load
            codes = {code for _, code, _ in answers}
            assert codes <= {200, 503}, [a for a in answers if a[1] not in (200, 503)]
            assert all(after for _, code, after in answers if code == 503)
            assert any(code == 503 for _, code, _ in answers)  # it was down a while
            late = [code for when, code, _ in answers if when > 7.5]
            assert late and set(late) == {200}  # recovered by itself
            served = sum(code == 200 for _, code, _ in answers)
            await assert_charged_once(replicas, wallet, served)
