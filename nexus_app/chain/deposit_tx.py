"""Deposit transactions, Solana Pay style: the client builds them from an intent, and the
gateway checks them before crediting. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.backend import ChainTransaction
from nexus_app.chain.treasury import signed


class DepositRejected(Exception):
    """A transaction that is not a valid deposit for its intent; the message says why."""


@dataclass(frozen=True, slots=True)
class DepositIntent:
    """What a client needs to build a deposit (from `GET /v1/deposits/intent`)."""

    mint: Pubkey
    decimals: int
    treasury: Pubkey
    reference: Pubkey
    recent_blockhash: Hash
    memo: str
    amount: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DepositIntent:
        return cls(
            mint=Pubkey.from_string(body["mint"]),
            decimals=int(body["decimals"]),
            treasury=Pubkey.from_string(body["treasury"]),
            reference=Pubkey.from_string(body["reference"]),
            recent_blockhash=Hash.from_string(body["recent_blockhash"]),
            memo=str(body["memo"]),
            amount=int(body["amount"]),
        )


def deposit_instructions(owner: Pubkey, intent: DepositIntent) -> list[Instruction]:
    """TransferChecked from `owner`'s token account to the treasury, carrying the reference
    as an extra read-only key, then the memo."""
    source = token.associated_token_address(owner, intent.mint)
    return [
        token.transfer_checked(source, intent.mint, intent.treasury, owner, intent.amount,
                               intent.decimals, extra_keys=(intent.reference,)),
        token.memo(owner, intent.memo),
    ]


def build_deposit(keypair: Keypair, intent: DepositIntent) -> VersionedTransaction:
    """The deposit transaction, signed by the wallet (which also pays the fee)."""
    return signed(keypair, deposit_instructions(keypair.pubkey(), intent),
                  intent.recent_blockhash)


def transfer_references(tx: ChainTransaction) -> set[Pubkey]:
    """Every extra key on a TransferChecked of `tx`: the candidates for a deposit reference."""
    return {
        key for transfer in token.token_transfers(tx.transaction, tx.loaded_keys)
        for key in transfer.extra_keys
    }


def check_deposit(
    tx: ChainTransaction, *, reference: Pubkey, mint: Pubkey, treasury: Pubkey,
    decimals: int, amount: int,
) -> token.TokenTransfer:
    """The transfer of `tx` that pays the intent `reference`; `DepositRejected` unless the
    transaction succeeded and that transfer is an SPL Token TransferChecked of exactly
    `amount` of `mint` into `treasury`."""
    if not tx.succeeded:
        raise DepositRejected(f"the transaction failed on chain ({tx.error}); nothing moved")
    transfers = [
        t for t in token.token_transfers(tx.transaction, tx.loaded_keys)
        if reference in t.extra_keys
    ]
    if not transfers:
        raise DepositRejected("the transaction has no TransferChecked carrying the deposit's "
                              "reference key")
    if len(transfers) > 1:
        raise DepositRejected("the transaction carries the reference on more than one transfer")
    transfer = transfers[0]
    if transfer.program != token.TOKEN_PROGRAM_ID:
        raise DepositRejected(f"the transfer is not by the SPL Token program "
                              f"({transfer.program})")
    if transfer.mint != mint:
        raise DepositRejected(f"wrong mint: the transfer moves {transfer.mint}, deposits take "
                              f"$NEXUS ({mint})")
    if transfer.destination != treasury:
        raise DepositRejected(f"wrong destination: the transfer pays {transfer.destination}, "
                              f"not the treasury token account {treasury}")
    if transfer.decimals != decimals:
        raise DepositRejected(f"wrong decimals: {transfer.decimals}, the mint has {decimals}")
    if transfer.amount != amount:
        raise DepositRejected(f"wrong amount: the transfer moves {transfer.amount} base units, "
                              f"the deposit is for {amount}")
    return transfer
