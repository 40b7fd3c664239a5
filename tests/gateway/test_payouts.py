"""Worker payouts and the chain/ledger agreement on the local chain (real SPL Token program
in LiteSVM); earnings come from chats served by the scripted worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair

from nexus_app.chain import token
from nexus_app.chain.backend import BLOCKHASH_LIFETIME_BLOCKS
from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.gateway.ledger.records import PayoutStatus
from tests.support.deposits import NEXUS, Depositor, chain, depositor, on_chain, treasury
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.scripted_worker import ScriptedWorker

pytestmark = pytest.mark.both_ledgers  # on the SQLite ledger and on PostgreSQL

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
WORKER_SHARE = 800  # of the scripted model's 1000 base units per request


async def chats(gw: RunningGateway, user: Depositor, count: int) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        for _ in range(count):
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(user.account.api_key))
            assert response.status_code == 200, response.text


async def signed_in(gw: RunningGateway, worker: ScriptedWorker) -> GatewayClient:
    """The worker's wallet signed in, with its token account created (with its own SOL)."""
    client = GatewayClient(gw.url)
    await client.sign_in(worker.keypair)
    await client.create_token_account(worker.keypair)
    return client


async def test_worker_claim_pays_exactly_its_earnings(gw: RunningGateway) -> None:
    user = await depositor(gw, "100")
    await user.client.deposit(user.keypair, "25")
    worker = await gw.worker()
    await chats(gw, user, 3)
    assert (await gw.store.worker_earnings(worker.wallet)).earned == 3 * WORKER_SHARE
    treasury_before = await chain(gw).token_balance(treasury(gw).token_account)
    client = await signed_in(gw, worker)

    payout = await client.claim()

    assert (payout.status, payout.amount) == ("paid", 3 * WORKER_SHARE)
    assert await on_chain(gw, worker.keypair.pubkey()) == 3 * WORKER_SHARE
    assert await chain(gw).token_balance(treasury(gw).token_account) == (
        treasury_before - 3 * WORKER_SHARE
    )
    me = await client.worker_earnings()
    assert (me.earned, me.paid, me.pending) == (2400, 2400, 0)
    assert [p.signature for p in me.payouts] == [payout.signature]
    with pytest.raises(ClientError, match="No unpaid earnings") as again:
        await client.claim()
    assert again.value.status == 409
    audit = await gw.store.audit()
    assert audit.ok and audit.payouts == 3 * WORKER_SHARE


async def test_claim_needs_the_wallets_own_sign_in(gw: RunningGateway) -> None:
    user = await depositor(gw)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        response = await http.post("/v1/workers/claim", headers=auth(user.account.api_key))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_session"


async def test_concurrent_claims_pay_once(gw: RunningGateway) -> None:
    user = await depositor(gw)
    await user.client.deposit(user.keypair, "10")
    worker = await gw.worker()
    await chats(gw, user, 2)
    client = await signed_in(gw, worker)
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        responses = await asyncio.gather(*(
            http.post("/v1/workers/claim", headers=auth(str(client.token))) for _ in range(10)
        ))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert await on_chain(gw, worker.keypair.pubkey()) == 2 * WORKER_SHARE
    assert (await gw.store.audit()).ok


async def test_payout_failing_on_chain_leaves_earnings_claimable(gw: RunningGateway) -> None:
    user = await gw.account(credit=10_000)  # granted credit: the treasury holds no tokens
    worker = await gw.worker()
    await chats(gw, Depositor(user, GatewayClient(gw.url)), 2)
    client = await signed_in(gw, worker)

    with pytest.raises(ClientError, match="stay claimable") as failed:
        await client.claim()

    assert failed.value.status == 502
    me = await client.worker_earnings()
    assert (me.pending, me.paid, me.paying) == (1600, 0, 0)
    assert [p.status for p in me.payouts] == [PayoutStatus.FAILED]
    funder = await depositor(gw)
    await funder.client.deposit(funder.keypair, "1")  # now the treasury can pay
    assert (await client.claim()).amount == 1600
    assert await on_chain(gw, worker.keypair.pubkey()) == 1600
    assert (await gw.store.audit()).ok


async def test_reconcile_settles_payouts_a_crash_left_open(gw: RunningGateway) -> None:
    user = await depositor(gw)
    await user.client.deposit(user.keypair, "10")
    sent_worker = await gw.worker()
    await chats(gw, user, 1)
    await sent_worker.stop()
    unsent_worker = await gw.worker()
    await chats(gw, user, 1)
    store, local = gw.store, chain(gw)
    await signed_in(gw, sent_worker)  # its token account
    # a payout sent just before a crash: its signature was recorded, the chain processed it
    sent = await store.begin_payout("pay_sent", sent_worker.wallet)
    assert sent is not None
    recent = await local.recent_blockhash()
    tx = treasury(gw).payout(sent_worker.keypair.pubkey(), sent.amount, recent.blockhash,
                             "NEXUS payout pay_sent")
    await store.payout_sent(sent.id, str(tx.signatures[0]), recent.last_valid_block_height)
    await local.send(tx)
    # a payout set aside, then the gateway died before sending it
    unsent = await store.begin_payout("pay_unsent", unsent_worker.wallet)
    assert unsent is not None

    assert await gw.gateway.payouts.reconcile() == 2

    assert {p.id: p.status for p in await store.payouts(sent_worker.wallet, 5)} == {
        "pay_sent": PayoutStatus.PAID}
    assert (await store.worker_earnings(sent_worker.wallet)).paid == sent.amount
    unsent_after = await store.worker_earnings(unsent_worker.wallet)
    assert (unsent_after.pending, unsent_after.paid) == (unsent.amount, 0)
    assert (await store.audit()).ok


async def test_a_payout_sent_before_heights_were_recorded_gets_a_deadline(
    gw: RunningGateway,
) -> None:
    """A payout left `sent` by a version that recorded no lastValidBlockHeight: its blockhash
    is older than now, so it expires at most a blockhash lifetime from now; until then it
    stays sent (its outcome is unknown)."""
    user = await depositor(gw)
    await user.client.deposit(user.keypair, "10")
    worker = await gw.worker()
    await chats(gw, user, 1)
    store = gw.store
    payout = await store.begin_payout("pay_old", worker.wallet)
    assert payout is not None
    await store.payout_sent(payout.id, str(Keypair().sign_message(b"lost in a crash")))

    await gw.gateway.payouts.reconcile()

    [row] = await store.payouts(worker.wallet, 5)
    height = await chain(gw).block_height()
    assert row.status == PayoutStatus.SENT and row.last_valid_block_height is not None
    assert height < row.last_valid_block_height <= height + BLOCKHASH_LIFETIME_BLOCKS
    assert (await store.worker_earnings(worker.wallet)).paying == payout.amount
    assert (await store.audit()).ok


async def test_after_restart_chain_ledger_and_history_agree(
        tmp_path: Path, ledger_url: str | None) -> None:
    settings = make_settings(tmp_path, ledger_url=ledger_url)
    async with running_gateway(settings) as gw:
        alice, bob = await depositor(gw, "50"), await depositor(gw, "30")
        await alice.client.deposit(alice.keypair, "20")
        await bob.client.deposit(bob.keypair, "12.5")
        worker = await gw.worker()
        await chats(gw, alice, 4)
        await (await signed_in(gw, worker)).claim()
        history = await alice.client.deposits()
        wallets = [alice.owner, bob.owner, worker.keypair.pubkey()]
        before = [await on_chain(gw, owner) for owner in wallets]
        await worker.stop()

    async with running_gateway(settings) as gw:
        audit = await gw.store.audit()
        assert audit.ok
        after = [await on_chain(gw, owner) for owner in wallets]
        assert after == before == [30 * NEXUS, 17_500_000, 4 * WORKER_SHARE]
        # what the treasury holds on chain is what the ledger says came in minus paid out
        held = await chain(gw).token_balance(treasury(gw).token_account)
        assert held == audit.deposits - audit.payouts == 32_500_000 - 4 * WORKER_SHARE
        histories = [await GatewayClient(gw.url, token=user.account.session).deposits()
                     for user in (alice, bob)]
        assert audit.deposits == sum(
            d.amount for entries in histories for d in entries if d.status == "credited"
        )
        assert histories[0] == history
        ata = token.associated_token_address(worker.keypair.pubkey(), treasury(gw).mint)
        assert await chain(gw).token_balance(ata) == audit.payouts
