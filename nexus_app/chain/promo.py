"""Funding the promotional pool on chain: a TransferChecked of $NEXUS from the operator's
token account into the treasury's, and the check the ledger credits it after. Pure
functions, no I/O.

A funding carries no reference key, and a deposit always carries one (`check_deposit` finds
its transfer by it), so one transaction can never be credited both as a deposit and as pool
funding.
"""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import ChainTransaction
from nexus_app.chain.treasury import signed

PROMO_MEMO = "NEXUS promotional pool funding"


class PromoRejected(Exception):
    """A transaction that is not a funding of the pool; the message says why."""


def build_promo_funding(source: Keypair, mint: Pubkey, treasury: Pubkey, amount: int,
                        decimals: int, blockhash: Hash) -> VersionedTransaction:
    """`amount` from `source`'s associated token account into the treasury token account
    `treasury`, signed by `source` (which also pays the fee)."""
    owner = source.pubkey()
    return signed(source, [
        token.transfer_checked(token.associated_token_address(owner, mint), mint, treasury,
                               owner, amount, decimals),
        token.memo(owner, PROMO_MEMO),
    ], blockhash)


def check_promo_funding(tx: ChainTransaction, *, mint: Pubkey, treasury: Pubkey,
                        decimals: int) -> tuple[int, Pubkey]:
    """(amount, source owner) of a processed funding; `PromoRejected` unless the transaction
    succeeded and holds SPL Token TransferChecked instructions of `mint` into `treasury` from
    another account, none carrying a reference key and none moving tokens out of it."""
    if not tx.succeeded:
        raise PromoRejected(f"the transaction failed on chain ({tx.error}); nothing moved")
    transfers = token.token_transfers(tx.transaction, tx.loaded_keys)
    if any(t.extra_keys for t in transfers):
        raise PromoRejected("a transfer carries a reference key: that is the shape of a "
                            "deposit, not of a pool funding")
    if any(t.source == treasury for t in transfers):
        raise PromoRejected("the transaction moves tokens out of the treasury")
    into = [t for t in transfers if t.destination == treasury]
    if not into:
        raise PromoRejected(f"no TransferChecked into the treasury token account {treasury}")
    for transfer in into:
        if transfer.program != token.TOKEN_PROGRAM_ID:
            raise PromoRejected(f"the transfer is not by the SPL Token program "
                                f"({transfer.program})")
        if transfer.mint != mint or transfer.decimals != decimals:
            raise PromoRejected(f"wrong mint: the transfer moves {transfer.mint} with "
                                f"{transfer.decimals} decimals, the pool takes $NEXUS ({mint})")
    if len({t.owner for t in into}) > 1:
        raise PromoRejected("the transfers into the treasury come from more than one owner")
    return sum(t.amount for t in into), into[0].owner
