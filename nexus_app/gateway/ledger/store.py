"""The gateway's storage interface: ledger, reservations, API keys, sessions, worker earnings.

One interface (`Store`); SQLite backs it today (`sqlite/store.py`). Every money operation is a
single atomic transaction whose guards (`balance >= amount`, reservation still open) are in the
SQL itself, so the same statements are correct on PostgreSQL with several gateway processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Kinds of ledger entries. Amounts are positive integers of base units.
DEPOSIT = "deposit"
GRANT = "grant"
FREE_CREDIT = "free_credit"  # the weekly free credit, issued from the promotional pool
FREE_CREDIT_LAPSE = "free_credit_lapse"  # unspent free credit of a past week, back to the pool
FREE_SPENT = "free_spent"  # the part of a settlement paid with free credit (a detail of SETTLE)
PROMO_FUNDING = "promo_funding"  # $NEXUS the operator transferred into the treasury for the pool
RESERVE = "reserve"
SETTLE = "settle"
REFUND = "refund"
WORKER_EARNING = "worker_earning"
TREASURY_FEE = "treasury_fee"
PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """Paid credit (`balance`) and this week's free credit, which is spent first."""

    account: str
    balance: int
    reserved: int
    total_spent: int
    updated_at: float
    free_balance: int = 0

    @property
    def available(self) -> int:
        return self.balance + self.free_balance


@dataclass(frozen=True, slots=True)
class FreeTopUp:
    """What a free credit top-up did: `lapsed` went back to the pool, `granted` came out of
    it, and `short` is what the pool could not cover this week."""

    granted: int = 0
    lapsed: int = 0
    short: int = 0


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
    """A worker wallet's earnings: `paying` is in payouts sent but not yet confirmed."""

    wallet: str
    earned: int
    paid: int
    paying: int = 0
    first_earned_at: float | None = None  # unix time; None before its first earning

    @property
    def pending(self) -> int:
        return self.earned - self.paid - self.paying


@dataclass(frozen=True, slots=True)
class DepositIntent:
    """A deposit the gateway expects: `amount` to the treasury, carrying `reference`."""

    id: str
    account: str
    reference: str
    amount: int
    memo: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class DepositEntry:
    """An intent in the deposit history, with the signature that paid it, if any."""

    intent: DepositIntent
    signature: str | None
    credited_at: float | None

    def status(self, now: float) -> str:
        if self.signature is not None:
            return "credited"
        return "pending" if now < self.intent.expires_at else "expired"


# Payout states: reserved in the ledger -> transaction signed and sent -> paid, or failed
# (earnings claimable again).
PAYOUT_PENDING = "pending"
PAYOUT_SENT = "sent"
PAYOUT_PAID = "paid"
PAYOUT_FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Payout:
    id: str
    wallet: str
    amount: int
    status: str
    signature: str | None
    created_at: float
    updated_at: float
    # the block height after which the signed transfer can no longer land (None: not sent yet,
    # or sent before the height was recorded)
    last_valid_block_height: int | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    """An account's endpoint for signed event notifications."""

    id: str
    account: str
    url: str
    events: tuple[str, ...]
    balance_low_threshold: int | None
    created_at: float
    balance_low_sent: bool = False  # balance.low fired and not yet re-armed by a top-up


# Delivery states: waiting for its (next) attempt -> delivered, or failed after the last one.
DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one webhook, and how its delivery went."""

    id: str
    webhook_id: str
    event_id: str
    event: str
    payload: bytes
    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_outcome: str | None = None  # a class such as "2xx" or "timeout", never the target's text


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a finished request's reservation is closed."""

    cost: int
    worker_wallet: str | None
    worker_amount: int
    treasury_amount: int


@dataclass(frozen=True, slots=True)
class LedgerAudit:
    """Totals from the ledger entries and from the kept balances; `ok` when they agree.

    Money enters the ledger only as deposits, grants and promotional pool funding; free
    credit is issued out of the pool (and lapses back into it), so it is never an inflow.
    `balances` counts paid and free credit; `free_*` check the free part on its own."""

    deposits: int
    grants: int
    free_credits: int
    balances: int
    reserved: int
    open_reservations: int
    worker_earnings: int
    treasury_fees: int
    payouts: int
    paid: int
    derived_balances: int
    derived_reserved: int
    settled: int
    promo_funding: int = 0  # ledger entries; `promo_fundings` is the table of signatures
    promo_fundings: int = 0
    pool: int = 0
    derived_pool: int = 0
    free_lapsed: int = 0
    free_spent: int = 0
    free_balances: int = 0
    free_reserved: int = 0

    @property
    def ok(self) -> bool:
        inflow = self.deposits + self.grants + self.promo_funding
        held = self.balances + self.reserved + self.pool
        return (
            inflow == held + self.worker_earnings + self.treasury_fees
            and self.derived_balances == self.balances
            and self.derived_reserved == self.reserved == self.open_reservations
            and self.derived_pool == self.pool >= 0
            and self.promo_funding == self.promo_fundings
            and self.free_balances + self.free_reserved
            == self.free_credits - self.free_lapsed - self.free_spent
            and self.settled == self.worker_earnings + self.treasury_fees
            and self.payouts == self.paid <= self.worker_earnings
            and min(self.balances, self.reserved, self.free_balances) >= 0
        )

    @property
    def owed(self) -> int:
        """What the treasury must hold for everyone it owes: paid and free credit, credit
        reserved by requests in flight, the promotional pool, and worker earnings not paid yet
        (claimable, held, or in a payout not confirmed). Treasury fees are the operator's."""
        return self.balances + self.reserved + self.pool + self.worker_earnings - self.paid


class Store(Protocol):
    """Everything the gateway persists."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def maintain(self) -> None: ...

    # ledger
    async def grant(self, account: str, amount: int, memo: str) -> None: ...
    async def top_up_free_credit(self, account: str, week: int, amount: int) -> FreeTopUp:
        """Issue `week`'s free credit from the promotional pool, never more than it holds.
        A new week first returns the unspent free credit to the pool, then issues up to
        `amount`; what the pool could not cover is issued later that week once it can."""
        ...
    async def credit_promo_funding(self, signature: str, amount: int, source: str) -> bool:
        """Add a checked on-chain funding to the pool; False if `signature` was credited
        (as a funding or a deposit) before."""
        ...
    async def promo_pool(self) -> int: ...
    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool: ...
    async def settle(self, reservation_id: str, settlement: Settlement) -> bool: ...
    async def release(self, reservation_id: str) -> bool: ...
    async def release_all_open(self) -> int: ...
    async def balance(self, account: str) -> AccountBalance: ...
    async def worker_earnings(self, wallet: str) -> WorkerEarnings: ...
    async def audit(self) -> LedgerAudit: ...

    # deposits
    async def add_deposit_intent(self, intent: DepositIntent, max_open: int) -> bool:
        """Add `intent` unless its account already has `max_open` open intents (unexpired,
        not credited); False when it has, in the same statement."""
        ...
    async def deposit_intent(self, reference: str) -> DepositIntent | None: ...
    async def open_deposit_intents(self, now: float, account: str | None = None,
                                   limit: int | None = None) -> list[DepositIntent]:
        """Uncredited intents expiring after `now` (of `account`), the soonest first."""
        ...
    async def prune_deposit_intents(self, expired_before: float) -> int:
        """Delete uncredited intents that expired before `expired_before`; credited ones
        stay as deposit history. Returns how many were deleted."""
        ...
    async def deposit_scan_cursor(self, address: str) -> str | None:
        """The newest signature of `address` the deposit watcher has looked at."""
        ...
    async def set_deposit_scan_cursor(self, address: str, signature: str) -> None: ...
    async def credit_deposit(self, signature: str, intent: DepositIntent) -> bool:
        """Credit `intent`'s amount for `signature`; False if that signature was credited."""
        ...
    async def deposit_history(self, account: str, limit: int) -> list[DepositEntry]: ...

    # payouts
    async def begin_payout(self, payout_id: str, wallet: str, minimum: int = 1) -> Payout | None:
        """Set aside all of `wallet`'s pending earnings for a payout; None if they are fewer
        than `minimum` base units."""
        ...
    async def payout_sent(self, payout_id: str, signature: str,
                          last_valid_block_height: int | None = None) -> None: ...
    async def payout_deadline(self, payout_id: str, last_valid_block_height: int) -> None:
        """Record the expiry height of a sent payout that has none."""
        ...
    async def finish_payout(self, payout_id: str, paid: bool) -> Payout | None:
        """Mark a payout paid (ledger entry) or failed (earnings claimable again)."""
        ...
    async def open_payouts(self) -> list[Payout]: ...
    async def payouts(self, wallet: str, limit: int) -> list[Payout]: ...

    # webhooks
    async def add_webhook(self, webhook: Webhook) -> None: ...
    async def webhooks(self, account: str | None = None) -> list[Webhook]:
        """The account's webhooks (every account's when None)."""
        ...
    async def delete_webhook(self, account: str, webhook_id: str) -> bool: ...
    async def set_balance_low_sent(self, webhook_id: str, sent: bool) -> None: ...
    async def add_deliveries(self, deliveries: list[WebhookDelivery]) -> None: ...
    async def due_deliveries(self, now: float, limit: int) -> list[tuple[WebhookDelivery, str]]:
        """Pending deliveries whose attempt is due, with their webhook's URL."""
        ...
    async def record_attempt(self, delivery_id: str, status: str, next_attempt_at: float,
                             outcome: str) -> None: ...
    async def deliveries(self, webhook_id: str, limit: int) -> list[WebhookDelivery]: ...
    async def note_model_served(self, account: str, model: str, at: float) -> None:
        """Remember that `account` had a job of `model` served (for model.unavailable)."""
        ...
    async def claim_model_alerts(self, model: str, alerted_before: float,
                                 now: float) -> list[str]:
        """The accounts served `model` that were not alerted about it since `alerted_before`,
        marked alerted `now`."""
        ...
    async def forget_models_served(self, account: str) -> None: ...
    async def prune_webhooks(self, before: float) -> int:
        """Delete deliveries that ended (delivered or failed) and records of models served
        before `before`; returns the deliveries deleted."""
        ...

    # API keys and sign-in sessions
    async def add_key(self, key: ApiKeyRecord) -> None: ...
    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...
    async def list_keys(self, account: str) -> list[ApiKeyRecord]: ...
    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None: ...
    async def touch_keys(self, last_used: dict[str, float]) -> None: ...
    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None: ...
    async def session_account(self, token_hash: str, now: float) -> str | None: ...
