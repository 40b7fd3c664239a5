"""A wallet's own associated token account, created and paid for (rent and fee) by the wallet:
the transaction a client signs, and the check a gateway makes before relaying one, so that
the treasury never pays a worker's account rent."""

from __future__ import annotations

from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from nexus_app.chain import token
from nexus_app.chain.treasury import signed


class NotTokenAccountCreation(Exception):
    """A transaction that is not exactly `owner` creating its own token account."""


def build_create_token_account(keypair: Keypair, mint: Pubkey,
                               blockhash: Hash) -> VersionedTransaction:
    """The idempotent creation of `keypair`'s associated token account for `mint`, paid and
    signed by `keypair` alone."""
    owner = keypair.pubkey()
    return signed(keypair, [token.create_token_account(owner, owner, mint)], blockhash)


def check_create_token_account(tx: VersionedTransaction, owner: Pubkey, mint: Pubkey) -> None:
    """Raise unless `tx` holds one instruction, the idempotent creation of `owner`'s
    associated token account for `mint`, paid by `owner`, signed by `owner` alone."""
    message = tx.message
    if isinstance(message, MessageV0) and message.address_table_lookups:
        raise NotTokenAccountCreation("it uses address lookup tables")
    keys = list(message.account_keys)
    if (message.header.num_required_signatures != 1 or len(tx.signatures) != 1
            or not keys or keys[0] != owner):
        raise NotTokenAccountCreation("it must be paid and signed by your wallet alone")
    if not all(tx.verify_with_results()):
        raise NotTokenAccountCreation("its signature does not verify")
    if len(message.instructions) != 1:
        raise NotTokenAccountCreation("it must hold exactly one instruction")
    ix = message.instructions[0]
    expected = token.create_token_account(owner, owner, mint)
    if (
        max([ix.program_id_index, *ix.accounts]) >= len(keys)
        or keys[ix.program_id_index] != expected.program_id
        or bytes(ix.data) != bytes(expected.data)
        or [keys[i] for i in ix.accounts] != [meta.pubkey for meta in expected.accounts]
    ):
        raise NotTokenAccountCreation(
            "its instruction must create your own associated token account for the "
            "gateway's mint, idempotently"
        )
