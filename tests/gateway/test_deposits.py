"""Deposits on the local chain: real signed transactions executed by the real SPL Token,
Associated Token Account and Memo programs inside LiteSVM, through the gateway's HTTP API."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import TransactionFailed
from nexus_app.chain.deposit_tx import DepositIntent, build_deposit
from nexus_app.chain.treasury import Treasury, create_mint, top_up_sol
from nexus_app.client.gateway import ClientError
from nexus_app.gateway.ledger.records import DepositIntentRecord
from tests.support.deposits import NEXUS, Depositor, chain, depositor, on_chain, treasury
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.postgres import execute, query

pytestmark = pytest.mark.both_ledgers  # on the SQLite ledger and on PostgreSQL


@pytest.fixture
async def gw(tmp_path: Path, ledger_url: str | None) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, ledger_url=ledger_url,
                                             chain_poll_interval_s=0.2)) as running:
        yield running


def encoded(tx: VersionedTransaction) -> str:
    return base64.b64encode(bytes(tx)).decode()


async def credit(gw: RunningGateway, wallet: str) -> int:
    return (await gw.store.balance(wallet)).balance


async def test_faucet_then_deposit_credits_exactly_and_moves_tokens(gw: RunningGateway) -> None:
    user = await depositor(gw, "100")
    wallet = await user.client.wallet()
    assert (wallet.nexus, wallet.chain) == (100 * NEXUS, "local")
    assert wallet.sol_lamports > 0
    treasury_before = await chain(gw).token_balance(treasury(gw).token_account)

    result = await user.client.deposit(user.keypair, "25")

    assert result.status == "credited" and not result.already_credited
    assert result.amount == 25 * NEXUS and result.balance == 25 * NEXUS
    assert await credit(gw, user.account.wallet) == 25 * NEXUS
    assert await chain(gw).token_balance(treasury(gw).token_account) == (
        treasury_before + 25 * NEXUS
    )
    assert await on_chain(gw, user.owner) == 75 * NEXUS
    history = await user.client.deposits()
    assert [(d.status, d.signature) for d in history] == [
        ("credited", result.signature)
    ]
    found = await chain(gw).transaction(result.signature)
    assert found is not None and found.succeeded
    audit = await gw.store.audit()
    assert audit.ok and audit.deposits == 25 * NEXUS


async def test_same_deposit_sent_100_times_concurrently_is_credited_once(
    gw: RunningGateway,
) -> None:
    user = await depositor(gw, "100")
    tx = build_deposit(user.keypair, await user.client.deposit_intent("7"))
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
        responses = await asyncio.gather(*(
            http.post("/v1/deposits", json={"transaction": encoded(tx)},
                      headers=auth(user.account.api_key))
            for _ in range(100)
        ))
    assert {r.status_code for r in responses} == {200}
    assert sum(not r.json()["already_credited"] for r in responses) == 1
    assert await credit(gw, user.account.wallet) == 7 * NEXUS
    assert await on_chain(gw, user.owner) == 93 * NEXUS
    audit = await gw.store.audit()
    assert audit.ok and audit.deposits == 7 * NEXUS


async def test_deposit_sent_by_the_client_is_credited_by_signature(gw: RunningGateway) -> None:
    user = await depositor(gw)
    tx = build_deposit(user.keypair, await user.client.deposit_intent("3.5"))
    signature = await chain(gw).send(tx)  # the client sent it itself
    result = await user.client.submit_deposit(signature=signature)
    assert (result.status, result.amount) == ("credited", 3_500_000)
    again = await user.client.submit_deposit(signature=signature)
    assert again.already_credited
    assert await credit(gw, user.account.wallet) == 3_500_000


async def test_watcher_credits_a_deposit_whose_client_went_away(gw: RunningGateway) -> None:
    user = await depositor(gw)
    await chain(gw).send(build_deposit(user.keypair, await user.client.deposit_intent("2")))
    for _ in range(100):  # the client never posts it; the watcher finds it by reference
        if await credit(gw, user.account.wallet):
            break
        await asyncio.sleep(0.05)
    assert await credit(gw, user.account.wallet) == 2 * NEXUS
    assert (await user.client.deposits())[0].status == "credited"


async def other_mint_transfer(gw: RunningGateway, user: Depositor,
                              intent: DepositIntent) -> VersionedTransaction:
    """A transfer of the intent's amount of a different token into a token account of it."""
    authority = Keypair()
    await top_up_sol(chain(gw), authority.pubkey())
    mint = await create_mint(chain(gw), authority, 6)
    fake = Treasury(authority, mint, 6)
    await chain(gw).send(fake.mint_to(user.owner, 100 * NEXUS, await chain(gw).latest_blockhash()))
    await chain(gw).send(fake.mint_to(authority.pubkey(), 1, await chain(gw).latest_blockhash()))
    return build_deposit(user.keypair, replace(intent, mint=mint,
                                               treasury=fake.token_account))


async def refused(gw: RunningGateway, user: Depositor, body: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        return await http.post("/v1/deposits", json=body, headers=auth(user.account.api_key))


@pytest.mark.parametrize(("case", "status", "words"), [
    ("wrong mint", 400, "wrong mint"),
    ("wrong destination", 400, "wrong destination"),
    ("different amount", 400, "wrong amount"),
    ("no reference", 400, "no reference"),
    ("failed on chain", 400, "failed on chain"),
    ("forged signature", 400, "SignatureFailure"),
])
async def test_bad_deposits_are_refused_and_credit_nothing(
    gw: RunningGateway, case: str, status: int, words: str,
) -> None:
    user = await depositor(gw, "100")
    intent = await user.client.deposit_intent("25")
    if case == "wrong mint":
        tx = await other_mint_transfer(gw, user, intent)
    elif case == "wrong destination":
        stranger = token.associated_token_address(Keypair().pubkey(), intent.mint)
        tx = build_deposit(user.keypair, replace(intent, treasury=stranger))
    elif case == "different amount":
        tx = build_deposit(user.keypair, replace(intent, amount=24 * NEXUS))
    elif case == "no reference":
        tx = build_deposit(user.keypair, replace(intent, reference=Keypair().pubkey()))
    elif case == "failed on chain":  # more than the wallet holds: the token program fails it
        intent = await user.client.deposit_intent("1000")
        tx = build_deposit(user.keypair, intent)
    else:
        good = build_deposit(user.keypair, intent)
        tx = VersionedTransaction.populate(good.message, [Signature(bytes(64))])
    before = await on_chain(gw, user.owner)

    response = await refused(gw, user, {"transaction": encoded(tx)})

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"], error
    assert await credit(gw, user.account.wallet) == 0
    assert await on_chain(gw, user.owner) == before  # no tokens moved either
    assert (await gw.store.audit()).deposits == 0


async def test_failed_transaction_sent_by_the_client_is_refused(gw: RunningGateway) -> None:
    user = await depositor(gw, "10")
    tx = build_deposit(user.keypair, await user.client.deposit_intent("20"))
    with pytest.raises(TransactionFailed, match="insufficient funds"):
        await chain(gw).send(tx)
    response = await refused(gw, user, {"signature": str(tx.signatures[0])})
    assert response.status_code == 400
    assert "failed on chain" in response.json()["error"]["message"]
    assert await credit(gw, user.account.wallet) == 0


async def test_someone_elses_deposit_signature_is_refused(gw: RunningGateway) -> None:
    alice = await depositor(gw)
    bob = await depositor(gw)
    paid = await alice.client.deposit(alice.keypair, "5")
    response = await refused(gw, bob, {"signature": paid.signature})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "deposit_of_another_account"
    assert await credit(gw, bob.account.wallet) == 0
    assert await credit(gw, alice.account.wallet) == 5 * NEXUS


async def test_bad_deposit_requests_get_clear_errors(gw: RunningGateway) -> None:
    user = await depositor(gw)
    for body, words in [
        ({"transaction": "not base64!"}, "base64"),
        ({"transaction": encoded(VersionedTransaction.populate(
            MessageV0.try_compile(user.owner, [], [], Hash.default()), []))}, "not signed"),
        ({"signature": "xyz"}, "signature"),
        ({"signature": str(Signature(bytes(64)))}, "No processed transaction"),
        ({}, "either"),
    ]:
        response = await refused(gw, user, body)
        assert response.status_code == 400 and words in response.text, response.text
    for amount, words in [("0", "positive"), ("0.0000001", "decimals"), ("abc", "number")]:
        with pytest.raises(ClientError, match=words) as caught:
            await user.client.deposit_intent(amount)
        assert caught.value.status == 400
    with pytest.raises(ClientError, match="at most") as caught:
        await user.client.faucet("1000000")
    assert caught.value.status == 400


# intents are free: bounded per account, deleted when unpaid past their retention -----------

async def test_open_intents_per_account_are_capped_with_a_clear_429(
        tmp_path: Path, ledger_url: str | None) -> None:
    settings = make_settings(tmp_path, ledger_url=ledger_url, deposit_intents_per_account=3)
    async with running_gateway(settings) as gw:
        user = await depositor(gw)
        intents = [await user.client.deposit_intent("1") for _ in range(3)]
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            full = await http.get("/v1/deposits/intent", params={"amount": "1"},
                                  headers=auth(user.account.api_key))
        assert full.status_code == 429, full.text
        assert full.json()["error"]["code"] == "too_many_deposit_intents"
        assert 3500 <= int(full.headers["Retry-After"]) <= 3600  # when the oldest expires
        other = await depositor(gw)  # another account is not affected
        await other.client.deposit_intent("1")

        signature = await chain(gw).send(build_deposit(user.keypair, intents[0]))
        await user.client.submit_deposit(signature=signature)
        await user.client.deposit_intent("1")  # a paid intent is no longer open
        assert (await gw.store.audit()).ok


async def test_expired_unpaid_intents_are_deleted_and_paid_ones_kept(
        tmp_path: Path, ledger_url: str | None) -> None:
    settings = make_settings(tmp_path, ledger_url=ledger_url,
                             chain_poll_interval_s=0.1, deposit_intent_retention_s=0)
    async with running_gateway(settings) as gw:
        user = await depositor(gw)
        paid = await user.client.deposit(user.keypair, "2")
        store = gw.store
        an_hour_ago = time.time() - 3600
        await execute(store, "UPDATE deposit_intents SET expires_at = ?", an_hour_ago)
        for n in range(50):  # a flood of intents that expired unpaid
            await store.add_deposit_intent(DepositIntentRecord(
                f"dep_old{n}", user.account.wallet, str(Keypair().pubkey()), NEXUS, "m",
                an_hour_ago - 60, an_hour_ago), 100)

        async def pruned() -> bool:
            rows = await query(store, "SELECT COUNT(*) FROM deposit_intents")
            return bool(rows[0][0] == 1)

        for _ in range(100):
            if await pruned():
                break
            await asyncio.sleep(0.05)
        assert await pruned()
        history = await user.client.deposits()
        assert [(d.status, d.signature) for d in history] == [
            ("credited", paid.signature)]
        assert (await gw.store.audit()).ok


async def test_watcher_credits_a_late_deposit_of_an_intent_that_expired(
    gw: RunningGateway,
) -> None:
    """The gateway was away while the deposit landed and the intent expired meanwhile: the
    watcher still credits it, within the intent's retention."""
    user = await depositor(gw)
    intent = await user.client.deposit_intent("3")
    await execute(gw.store, "UPDATE deposit_intents SET expires_at = ?", time.time() - 60)
    await chain(gw).send(build_deposit(user.keypair, intent))
    for _ in range(100):
        if await credit(gw, user.account.wallet):
            break
        await asyncio.sleep(0.05)
    assert await credit(gw, user.account.wallet) == 3 * NEXUS
    assert (await gw.store.audit()).ok


async def test_watcher_keeps_where_its_treasury_scan_stopped(gw: RunningGateway) -> None:
    """So that a restarted gateway asks the chain only for newer transactions."""
    user = await depositor(gw)
    for amount in ("1", "2"):
        await chain(gw).send(build_deposit(user.keypair, await user.client.deposit_intent(amount)))
    for _ in range(100):
        if await credit(gw, user.account.wallet) == 3 * NEXUS:
            break
        await asyncio.sleep(0.05)
    treasury_account = str(treasury(gw).token_account)
    newest = (await chain(gw).signatures_for(treasury(gw).token_account, 1))[0]
    assert await gw.store.deposit_scan_cursor(treasury_account) == newest
    assert await credit(gw, user.account.wallet) == 3 * NEXUS
