"""The trust model's failure paths (tests/security/test_payout_attacks.py) against a chain that
really executed the transaction: `nexus-app chain` with its fault switch, under a gateway on
`--chain rpc`. Each ends with one transfer on chain, the payout paid once, the ledger audit
and the on-chain solvency check passing:

- JSON-RPC errors ("Node is behind") to every status poll of a payout the node executed;
- a payout that lands but whose status and transaction the node withholds until its
  blockhash expires;
- a node that executes `sendTransaction` and drops its answer (a payout and a deposit);
- a payout accepted by the node and lost before any block: failed once its blockhash
  expired, then paid by the next claim.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair

from nexus_app.chain import token
from nexus_app.chain.backend import BLOCKHASH_LIFETIME_BLOCKS
from nexus_app.chain.node_clock import FINALITY_SLOTS
from nexus_app.chain.node_faults import RpcFault
from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.node_setup import airdrop, fund
from nexus_app.chain.rpc import RpcChain
from nexus_app.chain.treasury import Treasury
from nexus_app.client.gateway import GatewayClient
from tests.support.chain_node import NEXUS, provision, rpc_settings, wait_until
from tests.support.gateways import RunningGateway, auth, running_gateway

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
EARNED = 800  # a worker's share of one scripted chat at make_settings' price


async def raw_claim(gw: RunningGateway, client: GatewayClient) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
        return await http.post("/v1/workers/claim", headers=auth(str(client.token)))


@pytest.fixture
async def funded(node: ChainNode) -> Treasury:
    """A treasury holding 100 $NEXUS: what the users' granted credit and the payouts need."""
    treasury = await provision(node.url)
    await fund(node.url, treasury, treasury.address, 100 * NEXUS)
    return treasury


@pytest.fixture
async def gateway(node: ChainNode, funded: Treasury, tmp_path: Path,
                  ) -> AsyncIterator[RunningGateway]:
    settings = rpc_settings(tmp_path, node, funded, chain_timeout_s=2.5,
                            chain_poll_interval_s=0.1)
    async with running_gateway(settings) as gw:
        yield gw


async def earning_worker(gw: RunningGateway, node: ChainNode) -> tuple[Keypair, GatewayClient]:
    """A worker that served one chat, signed in, with its token account (its own SOL)."""
    user = await gw.account(credit=10 * NEXUS)
    worker = await gw.worker()
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        served = await http.post("/v1/chat/completions", json=CHAT, headers=auth(user.api_key))
    assert served.status_code == 200, served.text
    await airdrop(node.url, worker.keypair.pubkey())
    client = GatewayClient(gw.url)
    await client.sign_in(worker.keypair)
    await client.create_token_account(worker.keypair)
    return worker.keypair, client


async def assert_paid_once(gw: RunningGateway, node: ChainNode, worker: Keypair,
                           client: GatewayClient, payouts: tuple[str, ...] = ("paid",)) -> None:
    """The worker's earnings paid by one transfer on chain (`payouts`: the statuses of its
    payouts, a failed one included where one was), the audit and solvency passing."""
    async def paid() -> bool:
        return (await client.worker_earnings()).paid == EARNED

    await wait_until(paid, timeout=20)
    chain = RpcChain(node.url, "finalized")
    account = token.associated_token_address(worker.pubkey(), gw.gateway.treasury.mint)
    assert await chain.token_balance(account) == EARNED  # one transfer, executed
    await chain.close()
    me = await client.worker_earnings()
    assert (me.pending, me.paying) == (0, 0)
    assert sorted(p.status for p in me.payouts) == sorted(payouts)
    assert (await raw_claim(gw, client)).status_code == 409
    audit = await gw.store.audit()
    assert audit.ok and audit.payouts == EARNED
    await gw.assert_solvent()


async def test_node_behind_while_confirming_a_payout_never_pays_twice(
    gateway: RunningGateway, node: ChainNode,
) -> None:
    worker, client = await earning_worker(gateway, node)
    node.faults.errors["getSignatureStatuses"] = RpcFault(-32005, "Node is behind", calls=60)

    first = await raw_claim(gateway, client)  # the node executes the transfer; polls fail

    assert first.status_code == 202 and first.json()["status"] == "sent", first.text
    assert "getSignatureStatuses" in node.faults.answered_errors
    again = await raw_claim(gateway, client)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_claim"
    await assert_paid_once(gateway, node, worker, client)


async def test_a_payout_withheld_until_its_blockhash_expires_is_paid_once(
    gateway: RunningGateway, node: ChainNode,
) -> None:
    worker, client = await earning_worker(gateway, node)
    node.faults.withhold = True  # it lands; the node shows nothing of it while it could land

    sent = await client.claim()

    assert sent.status == "sent"
    node.faults.withhold = False
    calls = len(node.faults.calls)
    await wait_until(lambda: _count(node, "getTransaction", calls, 3))
    me = await client.worker_earnings()  # unknown while its blockhash lives: not failed
    assert (me.paying, me.pending, me.paid) == (EARNED, 0, 0)
    assert (await raw_claim(gateway, client)).status_code == 409

    node.clock.advance(BLOCKHASH_LIFETIME_BLOCKS + FINALITY_SLOTS + 1)  # past its expiry
    await assert_paid_once(gateway, node, worker, client)


async def test_a_payout_lost_before_any_block_fails_after_expiry_then_pays_once(
    gateway: RunningGateway, node: ChainNode,
) -> None:
    worker, client = await earning_worker(gateway, node)
    node.faults.lose = 1  # accepted, answered with its signature, never in a block

    sent = await client.claim()

    assert sent.status == "sent" and node.faults.lost == [sent.signature]
    calls = len(node.faults.calls)
    await wait_until(lambda: _count(node, "getBlockHeight", calls, 3))
    me = await client.worker_earnings()  # it could still land: unknown, not failed
    assert (me.paying, me.pending) == (EARNED, 0)
    assert (await raw_claim(gateway, client)).status_code == 409

    node.clock.advance(BLOCKHASH_LIFETIME_BLOCKS + FINALITY_SLOTS + 1)  # now it never can

    async def failed() -> bool:
        return (await client.worker_earnings()).pending == EARNED

    await wait_until(failed)
    again = await client.claim()
    assert again.status == "paid"
    await assert_paid_once(gateway, node, worker, client, ("failed", "paid"))


async def test_dropped_send_answers_leave_a_payout_and_a_deposit_to_the_watcher(
    gateway: RunningGateway, node: ChainNode, funded: Treasury,
) -> None:
    worker, client = await earning_worker(gateway, node)
    node.faults.dropped["sendTransaction"] = 1

    sent = await client.claim()  # executed; the answer never comes

    assert sent.status == "sent" and node.faults.dropped_answers == ["sendTransaction"]
    await assert_paid_once(gateway, node, worker, client)

    user = await gateway.account()
    await fund(node.url, funded, user.keypair.pubkey(), 5 * NEXUS)
    depositor = GatewayClient(gateway.url, token=user.session)
    node.faults.dropped["sendTransaction"] = 1
    pending = await depositor.deposit(user.keypair, "5")
    assert pending.status == "pending"  # (the watcher may have credited it meanwhile)

    async def credited() -> bool:
        return (await depositor.balance()).balance == 5 * NEXUS

    await wait_until(credited, timeout=20)
    assert [d.status for d in await depositor.deposits()] == ["credited"]
    audit = await gateway.store.audit()
    assert audit.ok and audit.deposits == 5 * NEXUS
    await gateway.assert_solvent()


async def _count(node: ChainNode, method: str, since: int, at_least: int) -> bool:
    return node.faults.calls[since:].count(method) >= at_least
