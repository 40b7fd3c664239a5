"""What the ledger stores and returns: plain frozen records, and the kinds and states kept
as text in the database (the enums' values are those texts, so they must never change)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class EntryKind(StrEnum):
    """Kinds of ledger entries. Amounts are positive integers of base units."""

    DEPOSIT = "deposit"
    GRANT = "grant"
    FREE_CREDIT = "free_credit"  # the weekly free credit, issued from the promotional pool
    FREE_CREDIT_LAPSE = "free_credit_lapse"  # a past week's unspent free credit, back to the pool
    FREE_SPENT = "free_spent"  # the part of a settlement paid with free credit (a detail of SETTLE)
    PROMO_FUNDING = "promo_funding"  # $NEXUS the operator put in the treasury for the pool
    RESERVE = "reserve"
    SETTLE = "settle"
    REFUND = "refund"
    WORKER_EARNING = "worker_earning"
    TREASURY_FEE = "treasury_fee"
    PAYOUT = "payout"


class PayoutStatus(StrEnum):
    """Reserved in the ledger -> transaction signed and sent -> paid, or failed (earnings
    claimable again)."""

    PENDING = "pending"
    SENT = "sent"
    PAID = "paid"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """Waiting for its (next) attempt -> delivered, or failed after the last one."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


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
class Settlement:
    """How a finished request's reservation is closed."""

    cost: int
    worker_wallet: str | None
    worker_amount: int
    treasury_amount: int


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
class DepositIntentRecord:
    """A deposit the gateway expects: `amount` to the treasury, carrying `reference`."""

    id: str
    account: str
    reference: str
    amount: int
    memo: str
    created_at: float
    expires_at: float


# where a deposit intent stands in the history (derived, not stored)
DepositState = Literal["pending", "credited", "expired"]


@dataclass(frozen=True, slots=True)
class DepositEntry:
    """An intent in the deposit history, with the signature that paid it, if any."""

    intent: DepositIntentRecord
    signature: str | None
    credited_at: float | None

    def status(self, now: float) -> DepositState:
        if self.signature is not None:
            return "credited"
        return "pending" if now < self.intent.expires_at else "expired"


@dataclass(frozen=True, slots=True)
class Payout:
    id: str
    wallet: str
    amount: int
    status: PayoutStatus
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


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one webhook, and how its delivery went."""

    id: str
    webhook_id: str
    event_id: str
    event: str
    payload: bytes
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    created_at: float
    last_outcome: str | None = None  # a class such as "2xx" or "timeout", never the target's text


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

    @classmethod
    def of(cls, sums: dict[str, int | None], kept: dict[str, int]) -> LedgerAudit:
        """The audit from the ledger's sums by entry kind and the kept totals (read in one
        snapshot by the store), whatever the backend."""
        total = {kind: int(sums.get(kind.value) or 0) for kind in EntryKind}
        K = EntryKind
        pool_grants = kept.pop("pool_grants")
        return cls(
            deposits=total[K.DEPOSIT],
            grants=total[K.GRANT],
            free_credits=total[K.FREE_CREDIT],
            treasury_fees=total[K.TREASURY_FEE],
            payouts=total[K.PAYOUT],
            derived_balances=(total[K.DEPOSIT] + total[K.GRANT] - pool_grants
                              + total[K.FREE_CREDIT] - total[K.FREE_CREDIT_LAPSE]
                              - total[K.RESERVE] + total[K.REFUND]),
            derived_reserved=total[K.RESERVE] - total[K.SETTLE] - total[K.REFUND],
            settled=total[K.SETTLE],
            promo_funding=total[K.PROMO_FUNDING],
            derived_pool=(total[K.PROMO_FUNDING] + pool_grants - total[K.FREE_CREDIT]
                          + total[K.FREE_CREDIT_LAPSE]),
            free_lapsed=total[K.FREE_CREDIT_LAPSE],
            free_spent=total[K.FREE_SPENT],
            **kept,
        )

    @property
    def owed(self) -> int:
        """What the treasury must hold for everyone it owes: paid and free credit, credit
        reserved by requests in flight, the promotional pool, and worker earnings not paid yet
        (claimable, held, or in a payout not confirmed). Treasury fees are the operator's."""
        return self.balances + self.reserved + self.pool + self.worker_earnings - self.paid


class ConversationKind(StrEnum):
    """What a stored conversation record is: a turn of a `userid`'s history
    (`/v1/text/generate`), or a stored response of the Responses API."""

    TURN = "turn"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """One sealed conversation record: only its owner (account and key) and its opaque
    label are readable; the text is in `ciphertext`, under a key derived from the API key
    that wrote it (see `gateway/conversations/crypto.py`)."""

    id: str
    account: str
    key_id: str
    kind: ConversationKind
    label: str | None  # a turn's HMAC'd userid; None for a response
    salt: bytes
    nonce: bytes
    ciphertext: bytes
    created_at: float
    expires_at: float
