"""The PostgreSQL ledger beyond what every backend shares (test_ledger.py runs on both):
several replicas on one database, deadlocks retried, migrations taken once, the database going
away and coming back (the gateway answers 503 with Retry-After, charges nothing twice and
recovers alone), and an SQLite ledger moved into PostgreSQL by `nexus-app admin
migrate-ledger`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from nexus_app.gateway.ledger.postgres.schema import MIGRATIONS
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from nexus_app.gateway.ledger.records import ApiKeyRecord, Settlement
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import LedgerUnavailable
from tests.support.api import assert_openai_error
from tests.support.gateways import ROOT, auth, make_settings, running_gateway
from tests.support.postgres import CuttableProxy, query

ALICE, BOB, WORKER = "alice-account", "bob-account", "worker-wallet"
CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


async def replicas(url: str, count: int) -> list[PostgresStore]:
    stores = [PostgresStore(url, replica=f"replica-{n}") for n in range(count)]
    for store in stores:
        await store.open()
    return stores


async def test_reservations_from_three_replicas_never_overspend(postgres_url: str) -> None:
    stores = await replicas(postgres_url, 3)
    await stores[0].grant(ALICE, 1_000, "test")
    results = await asyncio.gather(*(
        stores[n % 3].reserve(f"r{n}", ALICE, 100) for n in range(150)))
    assert results.count(True) == 10
    balance = await stores[1].balance(ALICE)
    assert (balance.balance, balance.reserved) == (0, 1_000)
    # settled and refunded from replicas other than the one that reserved, each once
    closed = await asyncio.gather(*(
        stores[(n + 1) % 3].settle(f"r{n}", Settlement(60, WORKER, 48, 12))
        for n, ok in enumerate(results) if ok for _ in range(2)))
    assert closed.count(True) == 10
    audit = await stores[2].audit()
    assert audit.ok and audit.settled == 600 and audit.open_reservations == 0
    assert (await stores[0].balance(ALICE)).balance == 400
    for store in stores:
        await store.close()


async def test_each_replica_refunds_its_own_reservations(postgres_url: str) -> None:
    one, two = await replicas(postgres_url, 2)
    await one.grant(ALICE, 1_000, "test")
    assert await one.reserve("mine", ALICE, 300)
    assert await two.reserve("theirs", ALICE, 200)
    assert await one.release_all_open() == 1  # a restarted replica-0 leaves replica-1's be
    assert (await one.balance(ALICE)).reserved == 200
    assert await one.release_replica("replica-1") == 1  # replica-1's lease expired
    balance = await two.balance(ALICE)
    assert (balance.balance, balance.reserved) == (1_000, 0)
    assert not await two.settle("theirs", Settlement(1, WORKER, 1, 0))  # it stays refunded
    assert (await two.audit()).ok
    await one.close()
    await two.close()


async def test_a_deadlock_between_replicas_is_retried(postgres_url: str) -> None:
    """Two transactions taking two rows in opposite orders: PostgreSQL breaks the deadlock by
    failing one, which runs again from the start and then succeeds."""
    one, two = await replicas(postgres_url, 2)
    await one.grant(ALICE, 1, "test")
    await one.grant(BOB, 1, "test")
    attempts: list[str] = []
    both_locked_first = asyncio.Barrier(2)

    def transfer(first: str, second: str,
                 name: str) -> Callable[[asyncpg.Connection], Awaitable[None]]:
        async def body(conn: asyncpg.Connection) -> None:
            attempts.append(name)
            await conn.execute("UPDATE accounts SET balance = balance + 1 WHERE account = $1",
                               first)
            if attempts.count(name) == 1:
                await both_locked_first.wait()
            await conn.execute("UPDATE accounts SET balance = balance + 1 WHERE account = $1",
                               second)
        return body

    await asyncio.gather(one._tx(transfer(ALICE, BOB, "one")),
                         two._tx(transfer(BOB, ALICE, "two")))
    assert sorted(attempts) in (["one", "one", "two"], ["one", "two", "two"])
    assert [(await one.balance(a)).balance for a in (ALICE, BOB)] == [3, 3]
    await one.close()
    await two.close()


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url, replica=f"r{n}") for n in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    assert await query(stores[0], "SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    assert await stores[3].promo_pool() == 0  # the pool's one row, inserted once
    for store in stores:
        await store.close()


async def test_closings_missed_while_postgres_is_down_apply_when_it_is_back(
        postgres_url: str) -> None:
    async with CuttableProxy() as proxy:
        store = PostgresStore(proxy.url(postgres_url))
        await store.open()
        await store.grant(ALICE, 1_000, "test")
        assert await store.reserve("served", ALICE, 300)
        assert await store.reserve("open", ALICE, 100)
        proxy.cut()
        with pytest.raises(LedgerUnavailable):
            await store.settle("served", Settlement(200, WORKER, 160, 40))
        with pytest.raises(LedgerUnavailable):
            await store.release("served")  # what the gateway does next: both are kept
        with pytest.raises(LedgerUnavailable):
            await store.reserve("refused", ALICE, 100)
        with pytest.raises(LedgerUnavailable):
            await store.balance(ALICE)
        await store.maintain()  # still down: nothing is lost
        proxy.restore()
        await store.maintain()
        balance = await store.balance(ALICE)
        # the job served is charged once (the refund after it finds nothing open), the
        # refused reservation holds nothing, the other one stays open
        assert (balance.balance, balance.reserved, balance.total_spent) == (700, 100, 200)
        assert (await store.worker_earnings(WORKER)).earned == 160
        audit = await store.audit()
        assert audit.ok and audit.open_reservations == 100
        await store.close()


async def test_the_gateway_answers_503_while_postgres_is_down_and_recovers(
        tmp_path: Path, postgres_url: str) -> None:
    async with CuttableProxy() as proxy:
        settings = make_settings(tmp_path, ledger_url=proxy.url(postgres_url))
        async with running_gateway(settings) as gw, httpx.AsyncClient(
                base_url=gw.url, timeout=30) as http:
            account = await gw.account(credit=5_000)
            await gw.worker()
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(account.api_key))
            assert response.status_code == 200, response.text
            proxy.cut()
            for path, body in (("/v1/chat/completions", CHAT), ("/v1/balance", None)):
                response = await (http.post(path, json=body, headers=auth(account.api_key))
                                  if body else http.get(path, headers=auth(account.session)))
                assert_openai_error(response, 503, "ledger_unavailable")
                assert int(response.headers["Retry-After"]) > 0
                assert "postgres" not in response.text.lower()
            proxy.restore()
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(account.api_key))
            assert response.status_code == 200, response.text
            balance = await gw.store.balance(account.wallet)
            assert (balance.balance, balance.reserved) == (3_000, 0)  # two chats, once each
            assert (await gw.store.audit()).ok


def migrate(data_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(data_dir),
           "NEXUS_CONFIG": str(data_dir / "none.toml")}
    return subprocess.run(
        [sys.executable, "-m", "nexus_app", "admin", "migrate-ledger", "--to", url, "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


async def test_an_sqlite_ledger_moves_into_postgres_and_audits_the_same(
        tmp_path: Path, postgres_url: str) -> None:
    old = SQLiteStore(tmp_path / "ledger.sqlite3")
    await old.open()
    await old.credit_promo_funding("funding", 5_000, "operator")
    await old.top_up_free_credit(ALICE, 1, 400)
    await old.grant(ALICE, 2**62, "a large grant")  # BIGINT holds what SQLite holds
    await old.grant(BOB, 900, "test")
    for n in range(30):
        assert await old.reserve(f"r{n}", ALICE if n % 2 else BOB, 20)
        if n % 3:
            await old.settle(f"r{n}", Settlement(10, WORKER, 8, 2))
    await old.add_key(ApiKeyRecord("key_1", ALICE, "k", "nx-abc", "hash-1", 1.5, rpm=60))
    expected = await old.audit()
    await old.close()

    moved = await asyncio.to_thread(migrate, tmp_path, postgres_url)
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert result["ok"] and result["settled"] == expected.settled == 200
    # the 10 reservations the stopped gateway left open are refunded before the copy
    assert result["refunded_reservations"] == 10 and result["open_reservations"] == 0

    new = PostgresStore(postgres_url)
    await new.open()
    audit = await new.audit()
    assert audit.ok and audit.settled == expected.settled
    assert audit.balances == expected.balances + expected.reserved and audit.reserved == 0
    # Alice's 15 reservations of 20: 10 settled at 10, the other 5 refunded
    assert (await new.balance(ALICE)).available == 2**62 + 400 - 10 * 10
    assert (await new.key_by_hash("hash-1")) == ApiKeyRecord(
        "key_1", ALICE, "k", "nx-abc", "hash-1", 1.5, rpm=60)
    assert await new.release_all_open() == 0
    await new.grant(BOB, 1, "after the move")  # the ledger's ids go on after the copied ones
    assert (await new.audit()).ok
    await new.close()

    again = await asyncio.to_thread(migrate, tmp_path, postgres_url)
    assert again.returncode == 1 and "not empty" in again.stderr
