"""Deposits for tests: a signed-in wallet holding $NEXUS on the gateway's local chain, and
what the chain holds."""

from __future__ import annotations

from dataclasses import dataclass

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import Treasury
from nexus_app.client.gateway import GatewayClient
from tests.support.gateways import Account, RunningGateway

NEXUS = 1_000_000  # base units per NEXUS (6 decimals)


@dataclass
class Depositor:
    account: Account
    client: GatewayClient

    @property
    def keypair(self) -> Keypair:
        return self.account.keypair

    @property
    def owner(self) -> Pubkey:
        return self.keypair.pubkey()


async def depositor(gw: RunningGateway, faucet: str = "100") -> Depositor:
    """A signed-in wallet holding `faucet` NEXUS on chain."""
    account = await gw.account()
    client = GatewayClient(gw.url, token=account.session)
    await client.faucet(faucet)
    return Depositor(account, client)


def chain(gw: RunningGateway) -> LocalChain:
    assert isinstance(gw.gateway.chain, LocalChain)
    return gw.gateway.chain


def treasury(gw: RunningGateway) -> Treasury:
    return gw.gateway.treasury


async def on_chain(gw: RunningGateway, owner: Pubkey) -> int:
    """$NEXUS in `owner`'s associated token account."""
    return await chain(gw).token_balance(token.associated_token_address(owner, treasury(gw).mint))
