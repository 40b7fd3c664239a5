"""The ledger, on SQLite and on PostgreSQL (`both_ledgers`): atomic reservations, settlement,
refunds and the invariant deposits + grants + pool funding = balances + reserved + pool + worker
earnings + treasury fees, with free credit issued from the pool and settled apart from paid
credit."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from nexus_app import sqlite
from nexus_app.gateway.errors import InsufficientCredit
from nexus_app.gateway.ledger.records import FreeTopUp, Settlement
from nexus_app.gateway.ledger.sqlite.schema import MIGRATIONS
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import Store
from nexus_app.gateway.money.billing import Billing
from nexus_app.gateway.money.free_credit import FreeCredit
from nexus_app.gateway.money.pricing import Price, PriceBook, split_fee
from tests.support.gateways import make_settings
from tests.support.postgres import execute

pytestmark = pytest.mark.both_ledgers

ALICE, BOB, WORKER = "alice-account", "bob-account", "worker-wallet"


def settlement(cost: int, share: int = 80) -> Settlement:
    worker, treasury = split_fee(cost, share)
    return Settlement(cost, WORKER, worker, treasury)


async def test_reserve_settle_refund_moves_exact_amounts(store: Store) -> None:
    await store.grant(ALICE, 1000, "test")
    assert await store.reserve("r1", ALICE, 300)
    assert (await store.balance(ALICE)).balance == 700
    assert (await store.balance(ALICE)).reserved == 300
    assert await store.settle("r1", settlement(120))
    after = await store.balance(ALICE)
    assert (after.balance, after.reserved, after.total_spent) == (880, 0, 120)
    earnings = await store.worker_earnings(WORKER)
    assert (earnings.earned, earnings.paid, earnings.pending) == (96, 0, 96)
    audit = await store.audit()
    assert audit.ok and audit.treasury_fees == 24 and audit.settled == 120


async def test_reserve_refuses_more_than_the_balance(store: Store) -> None:
    await store.grant(ALICE, 100, "test")
    assert not await store.reserve("r1", ALICE, 101)
    assert not await store.reserve("r2", BOB, 1)  # no account at all
    assert await store.reserve("r3", ALICE, 100)
    assert not await store.reserve("r4", ALICE, 1)
    assert (await store.balance(ALICE)).balance == 0
    assert (await store.audit()).ok


async def test_settle_and_release_happen_once(store: Store) -> None:
    await store.grant(ALICE, 100, "test")
    await store.reserve("r1", ALICE, 50)
    assert await store.settle("r1", settlement(10))
    assert not await store.settle("r1", settlement(10))
    assert not await store.release("r1")
    await store.reserve("r2", ALICE, 40)
    assert await store.release("r2")
    assert not await store.release("r2")
    assert not await store.settle("r2", settlement(1))
    balance = await store.balance(ALICE)
    assert (balance.balance, balance.total_spent) == (90, 10)
    assert (await store.audit()).ok


async def test_a_bad_settlement_changes_nothing(store: Store) -> None:
    await store.grant(ALICE, 100, "test")
    await store.reserve("r1", ALICE, 50)
    with pytest.raises(ValueError, match="more than was reserved"):
        await store.settle("r1", settlement(51))
    with pytest.raises(ValueError, match="add up"):
        await store.settle("r1", Settlement(10, WORKER, 9, 9))
    assert (await store.balance(ALICE)).reserved == 50  # rolled back, still open
    assert await store.settle("r1", settlement(50))
    assert (await store.audit()).ok


async def test_open_reservations_are_refunded_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = SQLiteStore(path)
    await first.open()
    await first.grant(ALICE, 500, "test")
    for i in range(5):
        await first.reserve(f"r{i}", ALICE, 60)
    await first.settle("r0", settlement(60))
    first.db.close()  # no clean shutdown: the process "dies" here
    second = SQLiteStore(path)
    await second.open()
    assert await second.release_all_open() == 4
    balance = await second.balance(ALICE)
    assert (balance.balance, balance.reserved) == (440, 0)
    audit = await second.audit()
    assert audit.ok and audit.open_reservations == 0
    await second.close()


async def test_a_restart_refunds_only_its_own_replicas_reservations(tmp_path: Path) -> None:
    """Each reservation records its replica ("main" for the single process)."""
    path = tmp_path / "ledger.sqlite3"
    main, other = SQLiteStore(path), SQLiteStore(path, replica="other")
    await main.open()
    await other.open()
    await main.grant(ALICE, 500, "test")
    assert await main.reserve("r1", ALICE, 100) and await other.reserve("r2", ALICE, 50)
    assert main.db.execute("SELECT id, replica FROM reservations ORDER BY id").fetchall() == [
        ("r1", "main"), ("r2", "other")]
    assert await main.release_all_open() == 1
    assert (await main.balance(ALICE)).reserved == 50
    assert await main.release_replica("other") == 1
    assert (await other.balance(ALICE)).balance == 500 and (await other.audit()).ok
    await main.close()
    await other.close()


async def test_concurrent_reservations_never_overdraw(store: Store) -> None:
    await store.grant(ALICE, 1000, "test")
    results = await asyncio.gather(*(store.reserve(f"r{i}", ALICE, 100) for i in range(50)))
    assert results.count(True) == 10
    assert (await store.balance(ALICE)).balance == 0
    assert (await store.audit()).ok


async def test_reservations_from_two_connections_never_overdraw(tmp_path: Path) -> None:
    """Two gateway processes on one ledger: the guard is in the SQL, not in Python."""
    path = tmp_path / "ledger.sqlite3"
    one, two = SQLiteStore(path), SQLiteStore(path)
    await one.open()
    await two.open()
    await one.grant(ALICE, 550, "test")
    results = [await (one if i % 2 else two).reserve(f"r{i}", ALICE, 100) for i in range(20)]
    assert results.count(True) == 5
    assert (await one.audit()).ok
    await one.close()
    await two.close()


async def test_random_operations_keep_the_invariant(store: Store) -> None:
    rng = random.Random(1234)
    accounts = [f"acct-{i}" for i in range(4)]
    open_reservations: dict[str, int] = {}
    week = 0
    for step in range(600):
        action = rng.random()
        account = rng.choice(accounts)
        if action < 0.05:
            await store.credit_promo_funding(f"sig-{step}", rng.randint(1, 5_000), "operator")
        elif action < 0.10:
            week += rng.random() < 0.3  # sometimes a new week: unspent free credit lapses
            await store.top_up_free_credit(account, week, rng.randint(0, 2_000))
        elif action < 0.15:
            await store.grant(account, rng.randint(1, 10_000), "random")
        elif action < 0.55:
            amount = rng.randint(0, 3_000)
            if await store.reserve(f"r{step}", account, amount):
                open_reservations[f"r{step}"] = amount
        elif open_reservations:
            reservation = rng.choice(sorted(open_reservations))
            amount = open_reservations.pop(reservation)
            if action < 0.85:
                await store.settle(reservation, settlement(rng.randint(0, amount),
                                                           rng.randint(0, 100)))
            else:
                await store.release(reservation)
        audit = await store.audit()
        assert audit.ok, (step, audit)
    assert (await store.audit()).open_reservations == sum(open_reservations.values())


async def test_audit_detects_a_tampered_balance(store: Store) -> None:
    await store.grant(ALICE, 100, "test")
    await execute(store, "UPDATE accounts SET balance = balance + 1")
    assert not (await store.audit()).ok


@pytest.mark.parametrize("tamper", [
    "UPDATE promo_pool SET balance = balance + 1",  # pool credit out of nothing
    "UPDATE accounts SET free_balance = free_balance + 1",  # free credit out of nothing
    # spent free credit booked as paid: the totals match, the free side does not
    "UPDATE accounts SET free_balance = free_balance + 100, balance = balance - 100",
    "INSERT INTO promo_fundings VALUES ('forged', 5, 'x', 0)",  # a funding without its entry
])
async def test_audit_detects_tampered_free_credit(store: Store, tamper: str) -> None:
    await store.credit_promo_funding("sig", 1_000, "operator")
    await store.grant(ALICE, 500, "test")
    await store.top_up_free_credit(ALICE, 1, 400)
    assert await store.reserve("r1", ALICE, 600)  # 400 free + 200 paid
    assert await store.settle("r1", settlement(450))
    assert (await store.audit()).ok
    await execute(store, tamper)
    assert not (await store.audit()).ok


async def test_a_ledger_with_free_credit_from_before_the_pool_migrates_consistent(
        tmp_path: Path) -> None:
    """Free credit issued out of nothing by an earlier version is recorded as a grant into
    the pool, so the audit holds (and solvency shows whether fees cover it)."""
    before = next(i for i, m in enumerate(MIGRATIONS) if "promo_pool" in m)
    path = tmp_path / "ledger.sqlite3"
    old = sqlite.connect(path)
    sqlite.migrate(old, MIGRATIONS[:before])
    for account, free_left in ((ALICE, 300), (BOB, 0)):  # what the old top-up wrote
        old.execute("INSERT INTO accounts (account, updated_at, free_balance, free_week)"
                    " VALUES (?, 0, ?, 7)", (account, free_left))
        old.execute("INSERT INTO ledger (at, kind, account, amount, ref)"
                    " VALUES (0, 'free_credit', ?, 500, 'week 7')", (account,))
    old.execute("INSERT INTO worker_accounts (wallet, earned) VALUES ('w', 560)")
    old.execute("INSERT INTO ledger (at, kind, wallet, amount) VALUES"
                " (0, 'worker_earning', 'w', 560), (0, 'treasury_fee', NULL, 140),"
                " (0, 'reserve', 'x', 700), (0, 'settle', 'x', 700)")
    old.close()
    new = SQLiteStore(path)
    await new.open()
    audit = await new.audit()
    assert audit.ok, audit
    assert (audit.grants, audit.free_spent, audit.pool, audit.owed) == (1000, 700, 0, 300 + 560)
    # next week the unbacked 300 lapse into the pool, and come out of it again
    assert await new.top_up_free_credit(ALICE, 8, 500) == FreeTopUp(300, 300, 200)
    audit = await new.audit()
    assert audit.ok and audit.pool == 0 and audit.free_balances == 300
    await new.close()


def _old_migrate(db: sqlite3.Connection, migrations: list[str]) -> None:
    """How ledgers were migrated before `nexus_app.sqlite`: statement by statement, split on
    `;`, the version bumped in the same transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(migrations[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, script.split(";")):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
        db.execute("COMMIT")


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS) + 1))
async def test_a_ledger_made_by_the_earlier_code_opens_and_upgrades(
        tmp_path: Path, version: int) -> None:
    """A ledger file at any earlier schema version, written as the code before the shared
    SQLite helper wrote it, opens with the current code: migrated to the last version,
    keeping its accounts and entries."""
    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    _old_migrate(old, MIGRATIONS[:version])
    old.execute("INSERT INTO accounts (account, balance, updated_at) VALUES (?, 700, 0)",
                (ALICE,))
    old.execute("INSERT INTO ledger (at, kind, account, amount, ref)"
                " VALUES (0, 'grant', ?, 700, 'old grant')", (ALICE,))
    old.close()
    store = SQLiteStore(path)
    await store.open()
    assert sqlite.user_version(store.db) == len(MIGRATIONS)
    assert (await store.balance(ALICE)).balance == 700
    assert await store.reserve("r1", ALICE, 300)
    assert await store.settle("r1", settlement(300))
    audit = await store.audit()
    assert audit.ok and audit.grants == 700 and audit.settled == 300
    await store.close()


async def test_a_workers_earnings_are_summed_by_hour(store: Store) -> None:
    await store.grant(ALICE, 1_000, "test")
    before = int(time.time()) // 3600 * 3600
    for n in range(3):
        assert await store.reserve(f"r{n}", ALICE, 150)
        assert await store.settle(f"r{n}", settlement(50 * (n + 1)))
    after = int(time.time()) // 3600 * 3600
    hours = await store.earnings_by_hour(WORKER, before - 7200)
    assert hours in ([(before, 240, 3)], [(after, 240, 3)])  # 80% of 50 + 100 + 150
    assert await store.earnings_by_hour(WORKER, time.time() + 60) == []
    assert await store.earnings_by_hour("another-wallet", 0) == []


async def test_grants_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.grant(ALICE, 0, "zero")


async def test_billing_caps_reported_tokens(store: Store, tmp_path: Path) -> None:
    prices = {"m": {"per_request": 10, "input_per_million": 1_000_000,
                    "output_per_million": 2_000_000}}
    settings = make_settings(tmp_path, prices=prices)
    billing = Billing(store, PriceBook(settings), 80, FreeCredit(store, 0, "monday"))
    await store.grant(ALICE, 10_000, "test")
    reservation = await billing.reserve(ALICE, "m", prompt_bound=100, max_tokens=50)
    assert reservation.amount == 10 + 100 + 100
    assert reservation.price == Price(10, 1_000_000, 2_000_000)
    # a worker claiming more than the bound, max_tokens, or the bytes relayed is capped
    billed = billing.bill(reservation, prompt_tokens=10_000, completion_tokens=10_000,
                          delivered_bytes=30)
    assert (billed.prompt_tokens, billed.completion_tokens, billed.cost) == (100, 30, 170)
    await billing.settle(reservation, billed, WORKER)
    assert (await store.balance(ALICE)).balance == 10_000 - 170
    assert (await store.worker_earnings(WORKER)).earned == 136
    with pytest.raises(InsufficientCredit, match="balance is 9830"):
        await billing.reserve(ALICE, "m", prompt_bound=10_000, max_tokens=10_000)
    assert (await store.audit()).ok
