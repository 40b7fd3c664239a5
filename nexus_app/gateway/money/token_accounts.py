"""Workers' own token accounts: a payout goes only into an associated token account that
already exists, and the worker creates it with its own SOL. Clients that talk to the chain
only through the gateway get a blockhash here and have their signed creation relayed; the
gateway relays nothing else (see `check_create_token_account`)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import Chain
from nexus_app.chain.local import LocalChain
from nexus_app.chain.token_account import NotTokenAccountCreation, check_create_token_account
from nexus_app.chain.treasury import Treasury, top_up_sol
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.money.deposits import DepositFailed, Deposits
from nexus_app.units import format_units

# what a wallet needs to create its token account on a cluster: the rent-exempt minimum of
# a 165-byte token account, and the fee
RENT_LAMPORTS = 2_039_280
FEE_LAMPORTS = 5_000


@dataclass(frozen=True, slots=True)
class TokenAccountStatus:
    address: Pubkey
    exists: bool
    recent_blockhash: str


class TokenAccounts:
    def __init__(self, chain: Chain, treasury: Treasury) -> None:
        self.chain = chain
        self.treasury = treasury

    def address_of(self, wallet: str) -> Pubkey:
        return token.associated_token_address(Pubkey.from_string(wallet), self.treasury.mint)

    async def status(self, wallet: str) -> TokenAccountStatus:
        """Whether `wallet`'s token account exists, and a blockhash to create it with."""
        address = self.address_of(wallet)
        exists = await Deposits.chain_call(self.chain.account_exists(address))
        blockhash = await Deposits.chain_call(self.chain.latest_blockhash())
        return TokenAccountStatus(address, exists, str(blockhash))

    async def create(self, wallet: str, encoded: str) -> str:
        """Relay `wallet`'s own signed creation of its token account; its signature."""
        owner = Pubkey.from_string(wallet)
        tx = _decode(encoded)
        try:
            check_create_token_account(tx, owner, self.treasury.mint)
        except NotTokenAccountCreation as exc:
            raise BadRequest(f"Not a creation of your own token account: {exc}. The gateway "
                             "relays nothing else.", param="transaction",
                             code="not_token_account_creation") from None
        if isinstance(self.chain, LocalChain):  # the local chain's faucet: SOL for the rent
            await top_up_sol(self.chain, owner)
        try:
            return await Deposits.chain_call(self.chain.send(tx))
        except DepositFailed as exc:
            raise BadRequest(
                f"{exc.message} Your wallet pays the account's rent and the fee: it needs "
                f"about {format_units(RENT_LAMPORTS + FEE_LAMPORTS, 9)} SOL.",
                code="transaction_failed") from None


def _decode(encoded: str) -> VersionedTransaction:
    try:
        return VersionedTransaction.from_bytes(base64.b64decode(encoded, validate=True))
    except (ValueError, binascii.Error):
        raise BadRequest("'transaction' is not a base64 serialized Solana transaction.",
                         param="transaction") from None
