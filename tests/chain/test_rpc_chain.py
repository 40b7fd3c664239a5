"""The `rpc` chain backend against `nexus-app chain`: the local LiteSVM chain served over
Solana's JSON-RPC (nexus_app/chain/node_server.py), so every send, preflight, confirmation and
read runs the real SPL Token, Associated Token Account and Memo programs. Its clock makes a
block every 50 ms here: a status is finalized 32 blocks (1.6 s) after it lands.

The gateway on `--chain rpc --rpc-url` runs its money path on it: the treasury and the users'
SOL come from the node's airdrop and their $NEXUS from the treasury's mint, as a devnet
faucet would give them. `tests/support/solana_rpc_double.py` (a loopback double that executes
nothing) is kept only for the shapes this chain cannot produce; see its docstring."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import ChainUnavailable, TransactionFailed
from nexus_app.chain.deposit_tx import build_deposit
from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.node_setup import airdrop, fund
from nexus_app.chain.rpc import RpcChain
from nexus_app.chain.treasury import LAMPORTS_PER_SOL, Treasury
from nexus_app.client.gateway import ClientError, GatewayClient
from nexus_app.config import ConfigError
from tests.support.asgi import free_port
from tests.support.chain_node import BLOCK_S, NEXUS, provision, rpc_settings, wait_until
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway


async def payout_tx(node: ChainNode, chain: RpcChain, amount: int = 1234,
                    ) -> tuple[Treasury, Pubkey, VersionedTransaction]:
    """A treasury holding 10 $NEXUS, and its payout of `amount` to a new worker that has a
    token account."""
    treasury = await provision(node.url)
    await fund(node.url, treasury, treasury.address, 10 * NEXUS)
    worker = Keypair()
    await fund(node.url, treasury, worker.pubkey(), 0)
    return treasury, worker.pubkey(), treasury.payout(
        worker.pubkey(), amount, await chain.latest_blockhash(), "NEXUS payout t")


async def test_send_confirms_and_reads_back_the_transaction(node: ChainNode) -> None:
    chain = RpcChain(node.url, "finalized", poll_s=0.02)
    treasury, worker, tx = await payout_tx(node, chain)
    calls = len(node.faults.calls)
    signature = await chain.send(tx)
    assert node.faults.calls[calls:calls + 2] == ["sendTransaction", "getSignatureStatuses"]
    found = await chain.transaction(signature)
    assert found is not None and found.succeeded and found.slot > 0
    assert bytes(found.transaction) == bytes(tx)
    [transfer] = token.token_transfers(found.transaction)
    assert (transfer.amount, transfer.mint, transfer.source) == (1234, treasury.mint,
                                                                 treasury.token_account)
    worker_account = token.associated_token_address(worker, treasury.mint)
    assert (await chain.signatures_for(worker_account))[0] == signature
    assert await chain.token_balance(worker_account) == 1234  # executed, not just recorded
    assert await chain.token_balance(treasury.token_account) == 10 * NEXUS - 1234
    assert await chain.transaction(str(Keypair().sign_message(b"x"))) is None
    await chain.close()


async def test_balances_are_read_from_account_data(node: ChainNode) -> None:
    treasury = await provision(node.url)
    owner = Keypair().pubkey()
    await fund(node.url, treasury, owner, 42 * NEXUS)
    chain = RpcChain(node.url, "confirmed")
    assert await chain.sol_balance(owner) == LAMPORTS_PER_SOL  # the treasury paid the rent
    assert await chain.token_balance(token.associated_token_address(owner, treasury.mint)
                                     ) == 42 * NEXUS
    assert await chain.token_balance(Keypair().pubkey()) == 0
    assert not await chain.account_exists(Keypair().pubkey())
    await chain.close()


async def test_preflight_failure_is_a_failed_transaction(node: ChainNode) -> None:
    chain = RpcChain(node.url, "confirmed", poll_s=0.02)
    treasury, _, tx = await payout_tx(node, chain, amount=11 * NEXUS)  # it holds 10
    with pytest.raises(TransactionFailed, match=r"simulation failed.*custom program error: 0x1"):
        await chain.send(tx)
    assert await chain.transaction(str(tx.signatures[0])) is None  # never forwarded
    assert await chain.token_balance(treasury.token_account) == 10 * NEXUS
    await chain.close()


async def test_transaction_landing_with_an_error_is_a_failed_transaction(
    node: ChainNode,
) -> None:
    chain = RpcChain(node.url, "confirmed", poll_s=0.02)
    treasury, _, tx = await payout_tx(node, chain, amount=11 * NEXUS)
    sol = await chain.sol_balance(treasury.address)
    async with httpx.AsyncClient() as http:  # as a wallet skipping preflight sends it
        sent = (await http.post(node.url, json={
            "jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
            "params": [base64.b64encode(bytes(tx)).decode(),
                       {"encoding": "base64", "skipPreflight": True}]})).json()
    assert sent["result"] == str(tx.signatures[0])
    with pytest.raises(TransactionFailed, match="InstructionError"):
        await chain.send(tx)  # already processed: its status says it failed
    await asyncio.sleep(2 * BLOCK_S)  # confirmed a block after it landed
    found = await chain.transaction(str(tx.signatures[0]))
    assert found is not None and not found.succeeded
    assert await chain.token_balance(treasury.token_account) == 10 * NEXUS
    assert await chain.sol_balance(treasury.address) == sol - 5000  # the fee is paid all the same
    await chain.close()


async def test_commitment_not_reached_in_time_is_unavailable(node: ChainNode) -> None:
    chain = RpcChain(node.url, "finalized", timeout_s=0.3, poll_s=0.05)
    _, _, tx = await payout_tx(node, chain)
    with pytest.raises(ChainUnavailable, match="not finalized"):
        await chain.send(tx)  # finality takes 32 blocks: 1.6 s
    confirmed = RpcChain(node.url, "confirmed", poll_s=0.02)
    assert await confirmed.send(tx) == str(tx.signatures[0])
    patient = RpcChain(node.url, "finalized", poll_s=0.05)
    assert await patient.send(tx) == str(tx.signatures[0])
    for client in (chain, confirmed, patient):
        await client.close()


async def test_resending_a_processed_transaction_is_not_an_error(node: ChainNode) -> None:
    chain = RpcChain(node.url, "confirmed", poll_s=0.02)
    treasury, worker, tx = await payout_tx(node, chain)
    signature = await chain.send(tx)
    async with httpx.AsyncClient() as http:  # what the node answers the second send
        again = (await http.post(node.url, json={
            "jsonrpc": "2.0", "id": 1, "method": "sendTransaction",
            "params": [base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"}]})).json()
    assert again["error"]["code"] == -32002
    assert "already been processed" in again["error"]["message"]
    assert await chain.send(tx) == signature
    assert await chain.token_balance(token.associated_token_address(worker, treasury.mint)
                                     ) == 1234  # paid once
    await chain.close()


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


async def funded_user(gw: RunningGateway, node: ChainNode, treasury: Treasury,
                      amount: int) -> tuple[Keypair, GatewayClient]:
    account = await gw.account()
    await fund(node.url, treasury, account.keypair.pubkey(), amount)
    return account.keypair, GatewayClient(gw.url, token=account.session)


async def test_gateway_on_the_rpc_chain_credits_a_checked_deposit(
    node: ChainNode, tmp_path: Path,
) -> None:
    treasury = await provision(node.url)
    settings = rpc_settings(tmp_path, node, treasury, chain_poll_interval_s=60)
    async with running_gateway(settings) as gw:
        account = await gw.account()
        await fund(node.url, treasury, account.keypair.pubkey(), 30 * NEXUS)
        client = GatewayClient(gw.url, token=account.session)
        intent = await client.deposit_intent("25")
        assert intent.mint == treasury.mint and intent.treasury == treasury.token_account

        calls = len(node.faults.calls)
        short = build_deposit(account.keypair, replace(intent, amount=24 * NEXUS))
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.post(
                "/v1/deposits", headers=auth(account.api_key),
                json={"transaction": base64.b64encode(bytes(short)).decode()})
        assert response.status_code == 400 and "wrong amount" in response.text
        assert "sendTransaction" not in node.faults.calls[calls:]  # refused before the chain

        result = await client.deposit(account.keypair, "25")
        assert (result.status, result.balance) == ("credited", 25 * NEXUS)
        assert node.faults.calls[calls:].count("sendTransaction") == 1
        assert "getTransaction" in node.faults.calls[calls:]
        user_account = token.associated_token_address(account.keypair.pubkey(), treasury.mint)
        chain = RpcChain(node.url, "finalized")
        assert await chain.token_balance(user_account) == 5 * NEXUS
        await chain.close()

        with pytest.raises(ClientError, match="only on the local chain") as refused:
            await client.faucet("10")
        assert refused.value.status == 403
        await gw.assert_solvent()



async def test_unconfirmed_deposit_and_payout_are_settled_later(
    node: ChainNode, tmp_path: Path,
) -> None:
    """The gateway waits 0.3 s for finality (1.6 s here): the deposit and the payout land
    but are not final in time; the watcher then credits the one and reconciles the other."""
    treasury = await provision(node.url)
    await fund(node.url, treasury, treasury.address, 10 * NEXUS)  # what payouts are paid from
    settings = rpc_settings(tmp_path, node, treasury, chain_timeout_s=0.3,
                            chain_poll_interval_s=0.1)
    async with running_gateway(settings) as gw:
        keypair, client = await funded_user(gw, node, treasury, 4 * NEXUS)
        pending = await client.deposit(keypair, "4")
        assert pending.status == "pending" and pending.balance == 0

        account = await gw.account(credit=5000)
        worker = await gw.worker()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            chat = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                   json={"model": "scripted-model",
                                         "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 200
        worker_client = GatewayClient(gw.url)
        await worker_client.sign_in(worker.keypair)
        await airdrop(node.url, worker.keypair.pubkey())  # SOL for its token account's rent
        with pytest.raises(ClientError):  # landed, not final within the gateway's wait
            await worker_client.create_token_account(worker.keypair)
        await wait_until(lambda: _exists(node, token.associated_token_address(
            worker.keypair.pubkey(), treasury.mint)))
        sent = await worker_client.claim()
        assert (sent.status, sent.amount) == ("sent", 800)
        assert (await worker_client.worker_earnings()).paying == 800

        async def settled() -> bool:
            me = await worker_client.worker_earnings()
            return (await client.balance()).balance == 4 * NEXUS and me.paid == 800

        await wait_until(settled)
        assert [d.status for d in await client.deposits()] == ["credited"]
        audit = await gw.store.audit()
        assert audit.ok and (audit.deposits, audit.payouts) == (4 * NEXUS, 800)
        await gw.assert_solvent()


async def _exists(node: ChainNode, address: Pubkey) -> bool:
    chain = RpcChain(node.url, "finalized")
    try:
        return await chain.account_exists(address)
    finally:
        await chain.close()
