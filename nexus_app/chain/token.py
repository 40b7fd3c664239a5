"""SPL Token building blocks: program ids, associated token addresses, the instructions the
app sends (TransferChecked with reference keys, idempotent ATA creation, memo, mint), and the
parser that reads TransferChecked instructions back out of a transaction."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import spl.token.instructions as spl
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from spl.memo.constants import MEMO_PROGRAM_ID
from spl.memo.instructions import create_memo
from spl.memo.models import MemoParams
from spl.token.constants import ASSOCIATED_TOKEN_PROGRAM_ID, TOKEN_PROGRAM_ID
from spl.token.models import MintToCheckedParams, TransferCheckedParams

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM_ID",
    "MEMO_PROGRAM_ID",
    "TOKEN_PROGRAM_ID",
    "TokenTransfer",
    "associated_token_address",
    "create_token_account",
    "memo",
    "mint_to",
    "token_transfers",
    "transfer_checked",
]

TRANSFER_CHECKED = 12
TOKEN_ACCOUNT_AMOUNT = slice(64, 72)  # u64 amount inside an SPL token account's data


def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    return spl.get_associated_token_address(owner, mint)


def transfer_checked(
    source: Pubkey, mint: Pubkey, destination: Pubkey, owner: Pubkey, amount: int,
    decimals: int, extra_keys: tuple[Pubkey, ...] = (),
) -> Instruction:
    """TransferChecked; `extra_keys` are appended read-only (Solana Pay `reference` keys)."""
    ix = spl.transfer_checked(TransferCheckedParams(
        program_id=TOKEN_PROGRAM_ID, source=source, mint=mint, dest=destination, owner=owner,
        amount=amount, decimals=decimals,
    ))
    extra = [AccountMeta(key, is_signer=False, is_writable=False) for key in extra_keys]
    return Instruction(ix.program_id, ix.data, [*ix.accounts, *extra])


def create_token_account(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
    """Create `owner`'s associated token account for `mint` unless it exists."""
    return spl.create_idempotent_associated_token_account(payer, owner, mint)


def mint_to(mint: Pubkey, destination: Pubkey, authority: Pubkey, amount: int,
            decimals: int) -> Instruction:
    return spl.mint_to_checked(MintToCheckedParams(
        program_id=TOKEN_PROGRAM_ID, mint=mint, dest=destination, mint_authority=authority,
        amount=amount, decimals=decimals,
    ))


def memo(signer: Pubkey, text: str) -> Instruction:
    return create_memo(MemoParams(program_id=MEMO_PROGRAM_ID, signer=signer,
                                  message=text.encode()))


def token_account_amount(data: bytes) -> int:
    """The balance held in an SPL token account's data."""
    return int.from_bytes(data[TOKEN_ACCOUNT_AMOUNT], "little")


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """One TransferChecked instruction found in a transaction."""

    program: Pubkey
    source: Pubkey
    mint: Pubkey
    destination: Pubkey
    owner: Pubkey
    amount: int
    decimals: int
    extra_keys: tuple[Pubkey, ...]


def token_transfers(
    tx: VersionedTransaction, loaded_keys: tuple[Pubkey, ...] = ()
) -> list[TokenTransfer]:
    """Every top-level TransferChecked in `tx` (any program id: the caller checks it).
    `loaded_keys` are the address-lookup-table keys the chain resolved, in order."""
    message = tx.message
    keys = [*message.account_keys, *loaded_keys]
    transfers = []
    for ix in message.instructions:
        data = bytes(ix.data)
        if len(data) != 10 or data[0] != TRANSFER_CHECKED or len(ix.accounts) < 4:
            continue
        if max(ix.accounts) >= len(keys) or ix.program_id_index >= len(keys):
            continue
        amount, decimals = struct.unpack_from("<QB", data, 1)
        accounts = [keys[i] for i in ix.accounts]
        transfers.append(TokenTransfer(
            program=keys[ix.program_id_index], source=accounts[0], mint=accounts[1],
            destination=accounts[2], owner=accounts[3], amount=amount, decimals=decimals,
            extra_keys=tuple(accounts[4:]),
        ))
    return transfers
