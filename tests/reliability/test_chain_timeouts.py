"""The chain backend timing out in the middle of a deposit or a claim: the RPC node (a TEST
DOUBLE of the Solana JSON-RPC API) carries out `sendTransaction` but never answers it. Nothing
is credited or paid twice; the gateway settles both later from the chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from nexus_app.chain import token
from nexus_app.client.gateway import ClientError, GatewayClient
from tests.support.chain_node import rpc_settings, wait_until
from tests.support.gateways import auth, running_gateway
from tests.support.solana_rpc_double import RpcDouble, rpc_double

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def double() -> AsyncIterator[RpcDouble]:
    async with rpc_double() as running:
        yield running


async def test_a_deposit_and_a_claim_whose_send_times_out(double: RpcDouble,
                                                          tmp_path: Path) -> None:
    settings = rpc_settings(tmp_path, double, chain_timeout_s=0.5, chain_poll_interval_s=0.1)
    async with running_gateway(settings) as gw:
        account = await gw.account()
        client = GatewayClient(gw.url, token=account.session)
        double.stalled = {"sendTransaction"}
        pending = await client.deposit(account.keypair, "4")
        assert pending.status == "pending"  # the watcher may have credited it meanwhile
        # the client retries with the same signature while the chain is still silent
        again = await client.submit_deposit(signature=pending.signature)
        assert again.status in ("pending", "credited")

        async def credited() -> bool:
            return (await client.balance()).balance == 4_000_000

        await wait_until(credited)
        assert (await client.submit_deposit(signature=pending.signature)).balance == \
            4_000_000  # a third submission credits nothing more

        worker = await gw.worker()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            chat = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                   json=CHAT)
        assert chat.status_code == 200
        async with GatewayClient(gw.url) as worker_client:
            await worker_client.sign_in(worker.keypair)
            double.stalled = set()  # the worker creates its own token account first
            await worker_client.create_token_account(worker.keypair)
            double.stalled = {"sendTransaction"}
            sent = await worker_client.claim()  # its send times out too
            assert (sent.status, sent.amount) == ("sent", 800)
            with pytest.raises(ClientError) as twice:
                await worker_client.claim()  # the same earnings cannot be claimed again
            assert twice.value.status == 409

            double.stalled = set()  # the chain answers again: the payout is reconciled

            async def paid() -> bool:
                return (await worker_client.worker_earnings()).paid == 800

            await wait_until(paid)
        # a silent send may be sent again, but always the same signed transaction: the chain
        # holds one deposit, the worker's token account and one payout
        assert len(double.landed) == 3
        assert double.transfers_to(token.associated_token_address(
            worker.keypair.pubkey(), gw.gateway.treasury.mint)) == [800]
        audit = await gw.store.audit()
        assert audit.ok and (audit.deposits, audit.payouts) == (4_000_000, 800)
