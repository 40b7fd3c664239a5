"""The `rpc` chain backend, tested against a loopback JSON-RPC server that answers in the
shapes of the Solana RPC documentation (`tests/solana_rpc_double.py`, a test double): this
workplace cannot reach a Solana cluster, so no test here talks to a real one."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import ChainUnavailable, TransactionFailed
from nexus_app.chain.deposits import build_deposit
from nexus_app.chain.rpc import RpcChain
from nexus_app.chain.treasury import Treasury
from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.config import ConfigError, Settings
from tests.conftest import auth, free_port, make_settings, running_gateway
from tests.solana_rpc_double import RpcDouble, rpc_double

MINT = Keypair().pubkey()


@pytest.fixture
async def double() -> AsyncIterator[RpcDouble]:
    async with rpc_double() as running:
        yield running


def payout_tx(blockhash: Hash) -> tuple[Treasury, Pubkey, VersionedTransaction]:
    treasury = Treasury(Keypair(), MINT, 6)
    worker = Keypair().pubkey()
    return treasury, worker, treasury.payout(worker, 1234, blockhash, "NEXUS payout t")


async def test_send_confirms_and_reads_back_the_transaction(double: RpcDouble) -> None:
    chain = RpcChain(double.url, "finalized", poll_s=0.01)
    treasury, worker, tx = payout_tx(await chain.latest_blockhash())
    signature = await chain.send(tx)
    found = await chain.transaction(signature)
    assert found is not None and found.succeeded and found.slot > 0
    assert bytes(found.transaction) == bytes(tx)
    [transfer] = token.token_transfers(found.transaction)
    assert (transfer.amount, transfer.mint, transfer.source) == (1234, MINT,
                                                                 treasury.token_account)
    assert await chain.signatures_for(token.associated_token_address(worker, MINT)) == [
        signature]
    assert await chain.transaction(str(Keypair().sign_message(b"x"))) is None
    assert double.calls[:3] == ["getLatestBlockhash", "sendTransaction", "getSignatureStatuses"]
    await chain.close()


async def test_balances_are_read_from_account_data(double: RpcDouble) -> None:
    owner, account = Keypair().pubkey(), Keypair().pubkey()
    data = bytes(64) + (42_000_000).to_bytes(8, "little") + bytes(93)
    double.accounts[str(owner)] = (2_500_000_000, b"", "11111111111111111111111111111111")
    double.accounts[str(account)] = (2_039_280, data, str(token.TOKEN_PROGRAM_ID))
    chain = RpcChain(double.url)
    assert await chain.sol_balance(owner) == 2_500_000_000
    assert await chain.token_balance(account) == 42_000_000
    assert await chain.token_balance(Keypair().pubkey()) == 0
    await chain.close()


async def test_preflight_failure_is_a_failed_transaction(double: RpcDouble) -> None:
    double.preflight_error = "Error processing Instruction 0: custom program error: 0x1"
    chain = RpcChain(double.url, poll_s=0.01)
    _, _, tx = payout_tx(await chain.latest_blockhash())
    with pytest.raises(TransactionFailed, match="simulation failed"):
        await chain.send(tx)
    assert not double.landed
    await chain.close()


async def test_transaction_landing_with_an_error_is_a_failed_transaction(
    double: RpcDouble,
) -> None:
    double.land_with_error = True
    chain = RpcChain(double.url, poll_s=0.01)
    _, _, tx = payout_tx(await chain.latest_blockhash())
    with pytest.raises(TransactionFailed, match="InstructionError"):
        await chain.send(tx)
    found = await chain.transaction(str(tx.signatures[0]))
    assert found is not None and not found.succeeded
    await chain.close()


async def test_commitment_not_reached_in_time_is_unavailable(double: RpcDouble) -> None:
    double.confirmation = "confirmed"
    chain = RpcChain(double.url, "finalized", timeout_s=0.3, poll_s=0.05)
    _, _, tx = payout_tx(await chain.latest_blockhash())
    with pytest.raises(ChainUnavailable, match="not finalized"):
        await chain.send(tx)
    confirmed = RpcChain(double.url, "confirmed", poll_s=0.01)
    assert await confirmed.send(tx) == str(tx.signatures[0])
    await chain.close()
    await confirmed.close()


async def test_unreachable_node_is_unavailable() -> None:
    chain = RpcChain(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with pytest.raises(ChainUnavailable, match="did not answer getLatestBlockhash"):
        await chain.latest_blockhash()
    await chain.close()


def test_rpc_chain_needs_url_and_mint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rpc_url"):
        make_settings(tmp_path, chain="rpc")
    with pytest.raises(ConfigError, match="not a Solana address"):
        make_settings(tmp_path, chain="rpc", rpc_url="http://x", mint="nope")


async def test_gateway_on_the_rpc_chain_credits_a_checked_deposit(
    double: RpcDouble, tmp_path: Path,
) -> None:
    settings = rpc_settings(tmp_path, double, chain_poll_interval_s=60)
    async with running_gateway(settings) as gw:
        account = await gw.account()
        client = GatewayClient(gw.url, token=account.session)
        intent = await client.deposit_intent("25")
        assert intent.mint == MINT and intent.treasury == gw.gateway.treasury.token_account

        short = build_deposit(account.keypair, replace(intent, amount=24_000_000))
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.post(
                "/v1/deposits", headers=auth(account.api_key),
                json={"transaction": base64.b64encode(bytes(short)).decode()})
        assert response.status_code == 400 and "wrong amount" in response.text
        assert "sendTransaction" not in double.calls  # refused before it reached the chain

        result = await client.deposit(account.keypair, "25")
        assert (result["status"], result["balance"]) == ("credited", 25_000_000)
        assert double.calls.count("sendTransaction") == 1
        assert "getTransaction" in double.calls

        with pytest.raises(ClientError, match="only on the local chain") as refused:
            await client.faucet("10")
        assert refused.value.status == 403
        assert (await gw.store.audit()).ok


async def test_resending_a_processed_transaction_is_not_an_error(double: RpcDouble) -> None:
    chain = RpcChain(double.url, poll_s=0.01)
    _, _, tx = payout_tx(await chain.latest_blockhash())
    signature = await chain.send(tx)
    double.preflight_error = "This transaction has already been processed"
    assert await chain.send(tx) == signature
    await chain.close()


def rpc_settings(tmp_path: Path, double: RpcDouble, **overrides: Any) -> Settings:
    treasury_file = tmp_path / "treasury.json"
    treasury_file.write_text(json.dumps(list(bytes(Keypair()))))
    treasury_file.chmod(0o600)  # a gateway refuses a treasury key others can read
    return make_settings(tmp_path, chain="rpc", rpc_url=double.url, mint=str(MINT),
                         treasury_keypair=treasury_file, **overrides)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_unconfirmed_deposit_and_payout_are_settled_later(
    double: RpcDouble, tmp_path: Path,
) -> None:
    double.confirmation = "confirmed"  # the gateway waits for finalized: not yet
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.3, chain_poll_interval_s=0.1)
    async with running_gateway(settings) as gw:
        account = await gw.account()
        client = GatewayClient(gw.url, token=account.session)
        pending = await client.deposit(account.keypair, "4")
        assert pending["status"] == "pending" and pending["balance"] == 0

        await gw.store.grant(account.wallet, 5000, "test credit")
        worker = await gw.worker()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            chat = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                   json={"model": "scripted-model",
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200
        worker_client = GatewayClient(gw.url)
        await worker_client.sign_in(worker.keypair)
        double.confirmation = "finalized"  # the worker's own token account, created at once
        created = await worker_client.create_token_account(worker.keypair)
        assert created["exists"] and created["signature"] in double.landed
        double.confirmation = "confirmed"
        sent = await worker_client.claim()
        assert (sent["status"], sent["amount"]) == ("sent", 800)
        assert (await worker_client.worker_earnings())["paying"] == 800

        double.confirmation = "finalized"  # now the watcher credits and reconciles

        async def settled() -> bool:
            me = await worker_client.worker_earnings()
            return (await client.balance())["balance"] == 4_000_000 + 4000 and me["paid"] == 800

        await wait_until(settled)
        assert [d["status"] for d in await client.deposits()] == ["credited"]
        audit = await gw.store.audit()
        assert audit.ok and (audit.deposits, audit.payouts) == (4_000_000, 800)
