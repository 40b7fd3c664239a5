"""The chain interface the gateway uses, with one code path above two backends: the
in-process LiteSVM chain (`local.py`) and a real cluster over JSON-RPC (`rpc.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

# The longest a blockhash is accepted: a transaction not processed this long after it was
# signed never will be (a cluster's ~150 slots are about 60-90 s; the local chain uses this).
BLOCKHASH_LIFETIME_S = 120.0


class ChainError(Exception):
    """A chain call failed; the message says why and may be shown to the user."""


class TransactionFailed(ChainError):
    """The chain refused a transaction or executed it with an error: nothing moved
    (except, on a real cluster, the fee)."""


class ChainUnavailable(ChainError):
    """The chain did not answer (in time): the outcome of a sent transaction is unknown."""


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

    async def close(self) -> None: ...
