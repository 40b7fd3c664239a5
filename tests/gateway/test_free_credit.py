"""The weekly free credit: issued from the promotional pool (never more than it holds), as its
own ledger entry, spent before paid credit, lapsing back into the pool, never accumulating past
one week's amount, and exact under concurrency."""

from __future__ import annotations

import asyncio
import calendar
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair

from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import faucet
from nexus_app.gateway.ledger.records import EntryKind, FreeTopUp, Settlement
from nexus_app.gateway.ledger.store import Store
from nexus_app.gateway.money.free_credit import FreeCredit, week_number
from nexus_app.gateway.money.promo import fund_promo
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.postgres import query

pytestmark = pytest.mark.both_ledgers  # on the SQLite ledger and on PostgreSQL

ALICE, BOB = "alice-account", "bob-account"
MONDAY = calendar.timegm((2026, 11, 23, 0, 0, 0))  # a Monday, 00:00 UTC
WEEK = 7 * 86400


async def fund_pool(store: Store, amount: int, signature: str = "funding-1") -> None:
    """The pool's funding as the ledger records it once the chain check passed (the check
    itself is exercised against a real chain in the API tests and tests/security/)."""
    assert await store.credit_promo_funding(signature, amount, "operator-wallet")


async def fund_pool_on_chain(gw: RunningGateway, amount: int) -> None:
    """Mint test $NEXUS to an operator wallet and transfer it into the treasury for the pool,
    through the gateway's own chain (what `nexus-app admin fund-promo` does)."""
    gateway, operator = gw.gateway, Keypair()
    assert isinstance(gateway.chain, LocalChain)
    await faucet(gateway.chain, gateway.treasury, operator.pubkey(), amount)
    credit = await fund_promo(gw.store, gateway.chain, gateway.treasury, operator, amount)
    assert credit.credited and credit.amount == amount


async def entries(store: Store, kind: EntryKind = EntryKind.FREE_CREDIT) -> list[int]:
    rows = await query(store, "SELECT amount FROM ledger WHERE kind = ? ORDER BY id",
                       kind.value)
    return [amount for (amount,) in rows]


def test_weeks_start_on_the_configured_day_at_midnight_utc() -> None:
    monday = week_number(MONDAY, 0)
    assert week_number(MONDAY - 1, 0) == monday - 1  # Sunday 23:59:59
    assert week_number(MONDAY + WEEK - 1, 0) == monday
    assert week_number(MONDAY + WEEK, 0) == monday + 1
    wednesday = MONDAY + 2 * 86400
    assert week_number(wednesday - 1, 2) == week_number(wednesday, 2) - 1


async def test_free_credit_tops_up_once_a_week_and_never_accumulates(store) -> None:
    await fund_pool(store, 10_000)
    credit = FreeCredit(store, 500, "monday")
    await credit.top_up(ALICE, now=MONDAY + 10)
    await credit.top_up(ALICE, now=MONDAY + 3 * 86400)  # same week: nothing more
    assert (await store.balance(ALICE)).free_balance == 500
    assert await store.promo_pool() == 9_500
    assert await store.reserve("r1", ALICE, 200)
    assert await store.settle("r1", Settlement(200, "w", 160, 40))
    assert (await store.balance(ALICE)).free_balance == 300
    # next week: the unspent 300 lapse back to the pool, then 500 are issued (not 800)
    assert await credit.top_up(ALICE, now=MONDAY + WEEK + 5) == FreeTopUp(500, 300, 0)
    assert (await store.balance(ALICE)).free_balance == 500
    assert await store.promo_pool() == 9_300
    assert (await entries(store), await entries(store, EntryKind.FREE_CREDIT_LAPSE)) == (
        [500, 500], [300])
    # a second gateway process (its own memory) still issues once per week
    other = FreeCredit(store, 500, "monday")
    await other.top_up(ALICE, now=MONDAY + WEEK + 60)
    assert await entries(store) == [500, 500]
    audit = await store.audit()
    assert audit.ok and audit.free_credits == 1000 and audit.free_lapsed == 300
    assert (audit.pool, audit.promo_funding, audit.free_spent) == (9_300, 10_000, 200)


async def test_an_empty_pool_issues_nothing_and_a_short_one_what_it_holds(store) -> None:
    credit = FreeCredit(store, 500, "monday")
    assert await credit.top_up(ALICE, now=MONDAY) == FreeTopUp(0, 0, 500)  # never funded
    assert (await store.balance(ALICE)).free_balance == 0
    assert not await store.reserve("r1", ALICE, 1)  # nothing to spend
    await fund_pool(store, 700)
    assert await credit.top_up(ALICE, now=MONDAY + 60) == FreeTopUp(500, 0, 0)  # owed, issued
    assert await credit.top_up(BOB, now=MONDAY + 60) == FreeTopUp(200, 0, 300)  # what is left
    assert await credit.top_up(BOB, now=MONDAY + 90) == FreeTopUp(0, 0, 300)  # pool empty
    await fund_pool(store, 1_000, signature="funding-2")
    assert await credit.top_up(BOB, now=MONDAY + 120) == FreeTopUp(300, 0, 0)
    assert await credit.top_up(BOB, now=MONDAY + 150) == FreeTopUp()  # in full: nothing more
    assert sum(await entries(store)) == 1_000 and await store.promo_pool() == 700
    assert (await store.audit()).ok


async def test_a_funding_signature_is_credited_once(store) -> None:
    await fund_pool(store, 700)
    assert not await store.credit_promo_funding("funding-1", 700, "operator-wallet")
    assert await store.promo_pool() == 700
    audit = await store.audit()
    assert audit.ok and audit.promo_funding == audit.promo_fundings == 700


async def test_free_credit_is_spent_before_paid_credit(store) -> None:
    await fund_pool(store, 1000)
    await store.grant(ALICE, 1000, "deposit stand-in")
    await store.top_up_free_credit(ALICE, 1, 300)
    assert await store.reserve("r1", ALICE, 500)  # 300 free + 200 paid held
    held = await store.balance(ALICE)
    assert (held.free_balance, held.balance, held.reserved) == (0, 800, 500)
    assert await store.settle("r1", Settlement(350, "w", 280, 70))  # 300 free, 50 paid
    after = await store.balance(ALICE)
    assert (after.free_balance, after.balance, after.total_spent) == (0, 950, 350)
    assert await store.reserve("r2", ALICE, 100)
    assert await store.release("r2")  # a failed request gives the paid credit back
    await store.top_up_free_credit(ALICE, 2, 300)
    assert await store.reserve("r3", ALICE, 400)
    assert await store.settle("r3", Settlement(100, "w", 80, 20))  # all from free credit
    final = await store.balance(ALICE)
    assert (final.free_balance, final.balance) == (200, 950)
    assert await store.reserve("r4", ALICE, 250)
    assert await store.release("r4")  # refunded in the parts it was held in
    assert (await store.balance(ALICE)).free_balance == 200
    assert (await store.balance(ALICE)).balance == 950
    audit = await store.audit()
    assert audit.ok and audit.free_spent == 300 + 100 and audit.pool == 1000 - 600


async def test_concurrent_requests_never_overdraw_free_credit(store) -> None:
    await fund_pool(store, 1000)
    await store.top_up_free_credit(ALICE, 1, 1000)
    await store.grant(ALICE, 250, "paid")
    results = await asyncio.gather(*(store.reserve(f"r{i}", ALICE, 100) for i in range(40)))
    assert sum(results) == 12  # 1250 covers twelve holds of 100
    balance = await store.balance(ALICE)
    assert (balance.free_balance, balance.balance, balance.reserved) == (0, 50, 1200)
    for i, ok in enumerate(results):
        if ok:
            assert await store.release(f"r{i}")
    balance = await store.balance(ALICE)
    assert (balance.free_balance, balance.balance) == (1000, 250)
    assert (await store.audit()).ok


async def test_the_api_shows_and_spends_the_free_credit(
        tmp_path: Path, ledger_url: str | None) -> None:
    settings = make_settings(tmp_path, ledger_url=ledger_url,
                             free_credit_weekly="0.01", free_credit_weekday="sunday")
    async with running_gateway(settings) as gw:
        await fund_pool_on_chain(gw, 25_000)
        account = await gw.account()
        await gw.worker()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
            assert (balance["balance"], balance["free_credit"]) == (10_000, 10_000)
            chat = {"model": "scripted-model", "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}]}
            response = await http.post("/v1/chat/completions", json=chat,
                                       headers=auth(account.api_key))
            assert response.status_code == 200, response.text
            balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
            assert balance["free_credit"] == balance["balance"] == 10_000 - 1000
            assert balance["total_spent"] == 1000
        assert (await gw.store.audit()).ok
        assert await gw.store.promo_pool() == 25_000 - 10_000


async def test_free_credit_is_off_by_default(gw, http) -> None:
    account = await gw.account()
    balance = (await http.get("/v1/balance", headers=auth(account.api_key))).json()
    assert (balance["balance"], balance["free_credit"]) == (0, 0)
    response = await http.post("/v1/chat/completions", headers=auth(account.api_key), json={
        "model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 402
