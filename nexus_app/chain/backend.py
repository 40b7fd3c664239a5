"""The chain interface the gateway uses, with one code path above two backends: the
in-process LiteSVM chain (`local.py`) and a real cluster over JSON-RPC (`rpc.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

# A blockhash is accepted in the blocks up to its `lastValidBlockHeight`, 150 blocks after the
# block that made it (a cluster's ~60-90 s). The local chain makes a block every
# BLOCKHASH_LIFETIME_S / BLOCKHASH_LIFETIME_BLOCKS seconds, so its blockhashes live 120 s.
BLOCKHASH_LIFETIME_BLOCKS = 150
BLOCKHASH_LIFETIME_S = 120.0


class ChainError(Exception):
    """A chain call failed; the message says why and may be shown to the user."""


class TransactionFailed(ChainError):
    """The chain refused a transaction or executed it with an error: nothing moved
    (except, on a real cluster, the fee). Raised only on the chain's own verdict."""


class ChainUnavailable(ChainError):
    """The chain did not answer (in time), answered with an RPC error, or answered what
    could not be read: the outcome of a sent transaction is unknown, never failed."""


def is_panic(exc: BaseException) -> bool:
    """Whether `exc` is a Rust panic inside solders (`pyo3_runtime.PanicException`, e.g. on an
    RPC error answer it cannot read): a BaseException that no module exports by name."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


@dataclass(frozen=True, slots=True)
class RecentBlockhash:
    """A blockhash to sign with, and the last block height at which a transaction signed
    with it can still be processed: past it, a transaction that has not landed never will."""

    blockhash: Hash
    last_valid_block_height: int


@dataclass(frozen=True, slots=True)
class ChainTransaction:
    """A processed transaction as the chain reports it."""

    signature: str
    slot: int
    transaction: VersionedTransaction
    loaded_keys: tuple[Pubkey, ...]
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None


class Chain(Protocol):
    """What the gateway needs from Solana."""

    name: str

    async def latest_blockhash(self) -> Hash: ...

    async def recent_blockhash(self) -> RecentBlockhash:
        """The latest blockhash with its last valid block height."""
        ...

    async def block_height(self) -> int:
        """The current block height at the configured commitment."""
        ...

    async def send(self, tx: VersionedTransaction) -> str:
        """Submit `tx` and wait until it is processed at the configured commitment.
        Returns its signature; raises `TransactionFailed` or `ChainUnavailable`."""
        ...

    async def transaction(self, signature: str) -> ChainTransaction | None:
        """The processed transaction with this signature, or None if the chain has none."""
        ...

    async def signatures_for(self, address: Pubkey, limit: int = 20, *,
                             before: str | None = None, until: str | None = None) -> list[str]:
        """Signatures of recent transactions that mention `address`, newest first: at most
        `limit`, older than `before` and newer than `until` when given (paging as
        `getSignaturesForAddress` does)."""
        ...

    async def sol_balance(self, owner: Pubkey) -> int: ...

    async def token_balance(self, token_account: Pubkey) -> int:
        """Base units in an SPL token account; 0 when it does not exist."""
        ...

    async def account_exists(self, address: Pubkey) -> bool:
        """Whether an account (holding lamports) exists at `address`."""
        ...

    async def close(self) -> None: ...
