"""Payouts, attacked for real against a gateway on loopback; each attack must fail.

On the RPC chain (against `tests/support/solana_rpc_double.py`, a TEST DOUBLE of a cluster's
JSON-RPC endpoint: no cluster can be reached from here):

- double payout: a claim whose transfer the node accepted, followed by JSON-RPC errors to the
  status polls (-32005 "Node is behind", -32603), used to be marked failed with the earnings
  claimable again while the transfer landed; a second claim paid again. Now an RPC error is
  *unknown*: the second claim gets 409, the chain holds one transfer, the payout ends paid;
- a payout whose blockhash truly expires (the block height passes its lastValidBlockHeight,
  the transfer never landed) fails, and the earnings are paid once by the next claim;
- answers solders cannot read (an unknown error code, an error it panics on) neither end a
  request in a 500 nor stop the chain watcher, which logs the failure once.

On the local chain (the real SPL Token and Associated Token Account programs in LiteSVM):

- the treasury SOL drain: a worker claims tiny amounts into a token account the treasury
  creates, closes it to take the rent, and repeats. Claims below `min_payout` are refused, a
  claim into a missing token account is refused before anything is set aside or sent (the
  treasury's SOL is unchanged), and the worker creates its account with its own SOL through
  a relay that accepts nothing else; a claim then costs the treasury the fee only.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import spl.token.instructions as spl
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from spl.token.models import CloseAccountParams

from nexus_app.chain import token
from nexus_app.chain.token_account import build_create_token_account
from nexus_app.chain.treasury import signed
from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.config import ConfigError, Settings
from nexus_app.gateway.ledger.records import PayoutStatus
from tests.support.chain_node import rpc_settings, wait_until
from tests.support.deposits import NEXUS, Depositor, chain, depositor, on_chain, treasury
from tests.support.gateways import Account, RunningGateway, auth, make_settings, running_gateway
from tests.support.scripted_worker import ScriptedWorker
from tests.support.solana_rpc_double import BLOCKHASH_LIFETIME_BLOCKS, RpcDouble, rpc_double

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
EARNED = 800  # a worker's share of one scripted chat at make_settings' price
FEE = 5_000  # lamports: one signature


@pytest.fixture
async def double() -> AsyncIterator[RpcDouble]:
    async with rpc_double() as running:
        yield running


async def chat(gw: RunningGateway, api_key: str, count: int = 1) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        for _ in range(count):
            response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(api_key))
            assert response.status_code == 200, response.text


async def raw_claim(gw: RunningGateway, client: GatewayClient) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
        return await http.post("/v1/workers/claim", headers=auth(str(client.token)))


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check)


async def earning_worker(gw: RunningGateway) -> tuple[Account, ScriptedWorker, GatewayClient]:
    """A user with granted credit, and a worker that served one chat of it, signed in with
    its own token account."""
    user = await gw.account(credit=10 * NEXUS)
    worker = await gw.worker()
    await chat(gw, user.api_key)
    client = GatewayClient(gw.url)
    await client.sign_in(worker.keypair)
    await client.create_token_account(worker.keypair)
    return user, worker, client


def worker_token_account(gw: RunningGateway, worker: ScriptedWorker) -> Pubkey:
    return token.associated_token_address(worker.keypair.pubkey(), gw.gateway.treasury.mint)


# --- double payout on an RPC error (rpc chain) -----------------------------------------------

@pytest.mark.parametrize("fault", [
    (-32005, "Node is behind", 1),  # once: solders panics reading it (no `data`)
    (-32005, "Node is behind", 40),  # every poll until the claim stops waiting
    (-32603, "Internal error", 3),
])
async def test_an_rpc_error_while_confirming_a_payout_never_pays_twice(
    double: RpcDouble, tmp_path: Path, fault: tuple[int, str, int],
) -> None:
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.5, chain_poll_interval_s=0.1)
    async with running_gateway(settings) as gw:
        _, worker, client = await earning_worker(gw)
        double.errors = {"getSignatureStatuses": fault}

        first = await raw_claim(gw, client)  # the node accepts the transfer; polls fail

        assert first.status_code in (200, 202), first.text
        assert double.answered_errors  # the attack happened
        again = await raw_claim(gw, client)
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "nothing_to_claim"

        async def paid() -> bool:
            return (await client.worker_earnings()).paid == EARNED

        await wait_until(paid)
        assert double.transfers_to(worker_token_account(gw, worker)) == [EARNED]
        me = await client.worker_earnings()
        assert (me.pending, me.paying) == (0, 0)
        assert [p.status for p in me.payouts] == [PayoutStatus.PAID]
        assert (await raw_claim(gw, client)).status_code == 409
        audit = await gw.store.audit()
        assert audit.ok and audit.payouts == EARNED


async def test_errors_past_the_blockhash_expiry_do_not_fail_a_payout_that_landed(
    double: RpcDouble, tmp_path: Path,
) -> None:
    """Even with the block height past the payout's last valid height, an error answer to
    getTransaction is no proof that the transfer never landed: the payout stays sent."""
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.3, chain_poll_interval_s=0.05)
    async with running_gateway(settings) as gw:
        _, worker, client = await earning_worker(gw)
        double.errors = {"getSignatureStatuses": (-32603, "Internal error"),
                         "getTransaction": (-32603, "Internal error")}
        sent = await client.claim()
        assert sent.status == PayoutStatus.SENT
        double.advance(BLOCKHASH_LIFETIME_BLOCKS + 10)
        await until(lambda: double.answered_errors.count("getTransaction") >= 5)

        assert (await client.worker_earnings()).paying == EARNED  # unknown, not failed
        assert (await raw_claim(gw, client)).status_code == 409

        double.errors = {}

        async def paid() -> bool:
            return (await client.worker_earnings()).paid == EARNED

        await wait_until(paid)
        assert double.transfers_to(worker_token_account(gw, worker)) == [EARNED]
        assert (await gw.store.audit()).ok


async def test_a_payout_whose_blockhash_expires_unlanded_fails_then_pays_once(
    double: RpcDouble, tmp_path: Path,
) -> None:
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.3, chain_poll_interval_s=0.05)
    async with running_gateway(settings) as gw:
        _, worker, client = await earning_worker(gw)
        double.never_land = True  # accepted by the node, dropped before any block
        sent = await client.claim()
        assert sent.status == PayoutStatus.SENT
        calls = len(double.calls)
        await until(lambda: double.calls[calls:].count("getBlockHeight") >= 3)
        # still within its blockhash's lifetime: unknown, however long it takes
        me = await client.worker_earnings()
        assert (me.paying, me.pending) == (EARNED, 0)

        double.advance(BLOCKHASH_LIFETIME_BLOCKS + 1)  # now it can never land

        async def failed() -> bool:
            return (await client.worker_earnings()).pending == EARNED

        await wait_until(failed)
        me = await client.worker_earnings()
        assert [p.status for p in me.payouts] == [PayoutStatus.FAILED]
        double.never_land = False
        again = await client.claim()
        assert (again.status, again.amount) == (PayoutStatus.PAID, EARNED)
        assert double.transfers_to(worker_token_account(gw, worker)) == [EARNED]
        assert (await raw_claim(gw, client)).status_code == 409
        audit = await gw.store.audit()
        assert audit.ok and audit.payouts == EARNED


@pytest.mark.parametrize("fault", [
    (-32005, "Node is behind"),  # solders panics: PanicException, a BaseException
    (-32099, "an error code solders does not know"),  # solders returns a bare int
])
async def test_unreadable_rpc_answers_are_no_500_and_do_not_stop_the_watcher(
    double: RpcDouble, tmp_path: Path, fault: tuple[int, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.3, chain_poll_interval_s=0.05)
    async with running_gateway(settings) as gw:
        user, worker, client = await earning_worker(gw)
        double.never_land = True
        assert (await client.claim()).status == PayoutStatus.SENT  # left for the watcher
        double.never_land = False
        await chat(gw, user.api_key)  # and new earnings to claim
        caplog.set_level(logging.WARNING, logger="nexus_app")
        every = ("getAccountInfo", "getLatestBlockhash", "getTransaction", "getBlockHeight",
                 "getSignaturesForAddress", "getSignatureStatuses", "sendTransaction")
        double.errors = dict.fromkeys(every, fault)

        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            claim = await http.post("/v1/workers/claim", headers=auth(str(client.token)))
            status = await http.get("/v1/workers/token-account",
                                    headers=auth(str(client.token)))
            intent = await http.get("/v1/deposits/intent", params={"amount": "1"},
                                    headers=auth(str(client.token)))
        for response in (claim, status, intent):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "chain_unavailable"
        rounds = len(double.answered_errors)
        await until(lambda: len(double.answered_errors) >= rounds + 10)

        double.errors = {}
        double.advance(BLOCKHASH_LIFETIME_BLOCKS + 1)  # the watcher still runs: it settles

        async def failed() -> bool:
            return (await client.worker_earnings()).pending == 2 * EARNED

        await wait_until(failed)
        watcher = [r for r in caplog.records if r.getMessage().startswith("chain watcher")]
        assert len([r for r in watcher if r.levelno == logging.WARNING]) == 1  # logged once
        assert (await client.claim()).status == PayoutStatus.PAID
        assert double.transfers_to(worker_token_account(gw, worker)) == [2 * EARNED]
        assert (await gw.store.audit()).ok


# --- treasury SOL drained by claims (local chain) --------------------------------------------

async def treasury_sol(gw: RunningGateway) -> int:
    return await chain(gw).sol_balance(treasury(gw).address)


async def funded_gateway_worker(gw: RunningGateway) -> tuple[Depositor, ScriptedWorker,
                                                               GatewayClient]:
    """A user with a real deposit (the treasury holds the tokens it pays out), and a worker
    that served one chat of it, signed in, without a token account."""
    user = await depositor(gw, "100")
    await user.client.deposit(user.keypair, "50")
    worker = await gw.worker()
    await chat(gw, user.account.api_key)
    client = GatewayClient(gw.url)
    await client.sign_in(worker.keypair)
    return user, worker, client


async def test_a_claim_below_the_minimum_payout_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, min_payout="1",  # the default
                             prices={"scripted-model": {"per_request": NEXUS // 2}})
    async with running_gateway(settings) as gw:
        user, worker, client = await funded_gateway_worker(gw)  # it earns 0.4 NEXUS
        await client.create_token_account(worker.keypair)
        sol_before = await treasury_sol(gw)

        refused = await raw_claim(gw, client)

        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "below_min_payout"
        assert "1.000000" in error["message"] and "0.400000" in error["message"]
        me = await client.worker_earnings()
        assert (me.pending, me.paying, me.payouts) == (400_000, 0, [])
        assert (me.min_payout, me.min_payout_display) == (NEXUS, "1.000000")
        assert await treasury_sol(gw) == sol_before  # nothing was sent
        await chat(gw, user.account.api_key, 2)  # 1.2 NEXUS now: claimable
        payout = await client.claim()
        assert (payout.status, payout.amount) == (PayoutStatus.PAID, 1_200_000)
        assert await on_chain(gw, worker.keypair.pubkey()) == 1_200_000
        await gw.assert_solvent()


async def test_the_treasury_pays_no_token_account_rent(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        user, worker, client = await funded_gateway_worker(gw)
        owner = worker.keypair.pubkey()
        account = worker_token_account(gw, worker)
        sol_before = await treasury_sol(gw)

        refused = await raw_claim(gw, client)  # no token account: the treasury would pay it

        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "token_account_missing"
        assert str(account) in refused.json()["error"]["message"]
        assert await treasury_sol(gw) == sol_before
        assert not await chain(gw).account_exists(account)
        me = await client.worker_earnings()
        assert (me.pending, me.paying, me.payouts) == (EARNED, 0, [])  # not set aside

        created = await client.create_token_account(worker.keypair)  # with its own SOL
        assert created.exists and created.token_account == str(account)
        assert await treasury_sol(gw) == sol_before
        rent = await chain(gw).sol_balance(account)
        assert rent > 0 and await chain(gw).sol_balance(owner) == (
            10**9 - rent - FEE)  # the local faucet's 1 SOL, less the rent and its fee

        payout = await client.claim(worker.keypair)  # exists: nothing more to create

        assert (payout.status, payout.amount) == (PayoutStatus.PAID, EARNED)
        assert await treasury_sol(gw) == sol_before - FEE  # the transfer's fee only
        assert await on_chain(gw, owner) == EARNED

        # the drain's next round: empty and close the account to take its rent back, earn
        # again, claim again -> refused, and the treasury pays nothing
        user_account = token.associated_token_address(user.owner, treasury(gw).mint)
        await chain(gw).send(signed(worker.keypair, [
            token.transfer_checked(account, treasury(gw).mint, user_account, owner, EARNED,
                                   treasury(gw).decimals),
            spl.close_account(CloseAccountParams(
                program_id=token.TOKEN_PROGRAM_ID, account=account, dest=owner, owner=owner)),
        ], await chain(gw).latest_blockhash()))
        await chat(gw, user.account.api_key)
        sol_before = await treasury_sol(gw)
        again = await raw_claim(gw, client)
        assert again.status_code == 400
        assert again.json()["error"]["code"] == "token_account_missing"
        assert await treasury_sol(gw) == sol_before
        await gw.assert_solvent()


async def test_the_relay_sends_only_the_callers_own_token_account_creation(
    tmp_path: Path,
) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        _, worker, client = await funded_gateway_worker(gw)
        mint, me = treasury(gw).mint, worker.keypair
        status = await client.token_account()
        assert (status.exists, status.mint) == (False, str(mint))
        blockhash = await chain(gw).latest_blockhash()
        other, other_mint = Keypair(), Keypair().pubkey()
        forged = [
            # another wallet's account, paid by the caller
            signed(me, [token.create_token_account(me.pubkey(), other.pubkey(), mint)],
                   blockhash),
            # its own account for another mint
            signed(me, [token.create_token_account(me.pubkey(), me.pubkey(), other_mint)],
                   blockhash),
            # signed by someone else entirely
            build_create_token_account(other, mint, blockhash),
            # the creation with another instruction riding along
            signed(me, [token.create_token_account(me.pubkey(), me.pubkey(), mint),
                        token.memo(me.pubkey(), "relayed by the gateway")], blockhash),
        ]
        async with httpx.AsyncClient(base_url=gw.url) as http:
            for tx in forged:
                response = await post_creation(http, client, tx)
                assert response.status_code == 400, response.text
                assert response.json()["error"]["code"] == "not_token_account_creation"
                assert await chain(gw).transaction(str(tx.signatures[0])) is None
            garbage = await http.post("/v1/workers/token-account", json={"transaction": "x!"},
                                      headers=auth(str(client.token)))
            assert garbage.status_code == 400
            user = await gw.account()
            by_key = await post_creation(http, GatewayClient(gw.url, token=user.api_key),
                                         build_create_token_account(me, mint, blockhash))
            assert by_key.status_code == 401  # the wallet's own session only
        assert not (await client.token_account()).exists
        with pytest.raises(ClientError, match="token account"):
            await client.claim()
        assert (await client.claim(me)).status == PayoutStatus.PAID
        await gw.assert_solvent()


async def post_creation(http: httpx.AsyncClient, client: GatewayClient,
                        tx: VersionedTransaction) -> httpx.Response:
    body: dict[str, Any] = {"transaction": base64.b64encode(bytes(tx)).decode()}
    return await http.post("/v1/workers/token-account", json=body,
                           headers=auth(str(client.token)))


def test_settings_default_min_payout_is_one_nexus(tmp_path: Path) -> None:
    assert Settings.model_fields["min_payout"].default == 1
    with pytest.raises(ConfigError, match="min_payout"):
        make_settings(tmp_path, min_payout="0.0000001")  # finer than the mint's 6 decimals

