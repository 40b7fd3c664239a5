"""The gateway's storage interface: ledger, reservations, API keys, sessions, worker earnings.

One interface (`Store`); SQLite backs it today (`sqlite_store.py`). Every money operation is a
single atomic transaction whose guards (`balance >= amount`, reservation still open) are in the
SQL itself, so the same statements are correct on PostgreSQL with several gateway processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Kinds of ledger entries. Amounts are positive integers of base units.
DEPOSIT = "deposit"
GRANT = "grant"
RESERVE = "reserve"
SETTLE = "settle"
REFUND = "refund"
WORKER_EARNING = "worker_earning"
TREASURY_FEE = "treasury_fee"
PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account: str
    balance: int
    reserved: int
    total_spent: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    account: str
    name: str
    prefix: str
    secret_hash: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerEarnings:
    wallet: str
    earned: int
    paid: int

    @property
    def pending(self) -> int:
        return self.earned - self.paid


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a finished request's reservation is closed."""

    cost: int
    worker_wallet: str | None
    worker_amount: int
    treasury_amount: int


@dataclass(frozen=True, slots=True)
class LedgerAudit:
    """Totals from the ledger entries and from the kept balances; `ok` when they agree."""

    deposits: int
    grants: int
    balances: int
    reserved: int
    open_reservations: int
    worker_earnings: int
    treasury_fees: int
    payouts: int
    derived_balances: int
    derived_reserved: int
    settled: int

    @property
    def ok(self) -> bool:
        inflow = self.deposits + self.grants
        return (
            inflow == self.balances + self.reserved + self.worker_earnings + self.treasury_fees
            and self.derived_balances == self.balances
            and self.derived_reserved == self.reserved == self.open_reservations
            and self.settled == self.worker_earnings + self.treasury_fees
            and min(self.balances, self.reserved) >= 0
        )


class Store(Protocol):
    """Everything the gateway persists."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def maintain(self) -> None: ...

    # ledger
    async def grant(self, account: str, amount: int, memo: str) -> None: ...
    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool: ...
    async def settle(self, reservation_id: str, settlement: Settlement) -> bool: ...
    async def release(self, reservation_id: str) -> bool: ...
    async def release_all_open(self) -> int: ...
    async def balance(self, account: str) -> AccountBalance: ...
    async def worker_earnings(self, wallet: str) -> WorkerEarnings: ...
    async def audit(self) -> LedgerAudit: ...

    # API keys and sign-in sessions
    async def add_key(self, key: ApiKeyRecord) -> None: ...
    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...
    async def list_keys(self, account: str) -> list[ApiKeyRecord]: ...
    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None: ...
    async def touch_keys(self, last_used: dict[str, float]) -> None: ...
    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None: ...
    async def session_account(self, token_hash: str, now: float) -> str | None: ...
