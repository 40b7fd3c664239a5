"""The gateway's storage interface, one small protocol per concern; `Store` is all of them,
what the composition root (`service.py`) holds. Each consumer asks for its slice only.

SQLite (`sqlite/`, the default) and PostgreSQL (`postgres/`, `ledger_url`) back every slice,
a module per slice. Every money operation is a single atomic transaction whose guards
(`balance >= amount`, reservation still open) are in the SQL itself, so the same statements are
correct with several gateway processes on one database.
"""

from __future__ import annotations

from typing import Protocol

from nexus_app.gateway.ledger.records import (
    AccountBalance,
    ApiKeyRecord,
    ConversationRecord,
    DeliveryStatus,
    DepositEntry,
    DepositIntentRecord,
    FreeTopUp,
    LedgerAudit,
    Payout,
    Settlement,
    Webhook,
    WebhookDelivery,
    WorkerEarnings,
)

DEFAULT_REPLICA = "main"  # the name of the one gateway process of a single-machine network


class LedgerUnavailable(Exception):
    """The ledger's database cannot be reached now (a 503 with Retry-After to callers):
    nothing of the operation that raised it was committed, unless it was the commit itself
    that was lost, which every money operation tolerates by being idempotent per id."""


class LedgerStore(Protocol):
    """Credit: grants, reservations of requests in flight and how they close, balances."""

    async def grant(self, account: str, amount: int, memo: str) -> None: ...
    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool:
        """Move `amount` to reserved, free credit first, only if the credit covers it."""
        ...
    async def settle(self, reservation_id: str, settlement: Settlement) -> bool:
        """Close a reservation: charge the cost, refund the rest, pay worker and treasury.
        False (and no change) when the reservation is not open."""
        ...
    async def release(self, reservation_id: str) -> bool:
        """Refund a reservation in full. False when it is not open."""
        ...
    async def release_all_open(self) -> int:
        """Refund every open reservation of this replica (those it left when it crashed);
        returns how many."""
        ...
    async def release_replica(self, replica: str) -> int:
        """Refund every open reservation of `replica` (one whose lease expired); returns
        how many."""
        ...
    async def balance(self, account: str) -> AccountBalance: ...


class PromoStore(Protocol):
    """The promotional pool and the weekly free credit issued out of it."""

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


class AuditStore(Protocol):
    """Reconciliation: the ledger's entries summed against the kept balances."""

    async def audit(self) -> LedgerAudit: ...


class DepositStore(Protocol):
    """Deposit intents, the deposits that paid them, and where the watcher stopped reading."""

    async def add_deposit_intent(self, intent: DepositIntentRecord, max_open: int) -> bool:
        """Add `intent` unless its account already has `max_open` open intents (unexpired,
        not credited); False when it has, in the same statement."""
        ...
    async def deposit_intent(self, reference: str) -> DepositIntentRecord | None: ...
    async def open_deposit_intents(self, now: float, account: str | None = None,
                                   limit: int | None = None) -> list[DepositIntentRecord]:
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
    async def credit_deposit(self, signature: str, intent: DepositIntentRecord) -> bool:
        """Credit `intent`'s amount for `signature`; False if that signature was credited."""
        ...
    async def deposit_history(self, account: str, limit: int) -> list[DepositEntry]: ...


class EarningsStore(Protocol):
    """Worker wallets' earnings and the payouts that pay them out."""

    async def worker_earnings(self, wallet: str) -> WorkerEarnings: ...
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
    async def earnings_by_hour(self, wallet: str, since: float) -> list[tuple[int, int, int]]:
        """`wallet`'s worker earnings since unix time `since`, one (hour's start as unix
        time, amount, jobs) per hour that has any, oldest first: a plain query of the ledger's
        worker_earning entries (one per paid job)."""
        ...


class WebhookStore(Protocol):
    """Accounts' webhooks, their deliveries, and the models each account was served."""

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
    async def record_attempt(self, delivery_id: str, status: DeliveryStatus,
                             next_attempt_at: float, outcome: str) -> None: ...
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


class KeyStore(Protocol):
    """API keys and sign-in sessions."""

    async def add_key(self, key: ApiKeyRecord) -> None: ...
    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None: ...
    async def list_keys(self, account: str) -> list[ApiKeyRecord]: ...
    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None: ...
    async def touch_keys(self, last_used: dict[str, float]) -> None: ...
    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None: ...
    async def session_account(self, token_hash: str, now: float) -> str | None: ...


class ConversationStore(Protocol):
    """Sealed conversation records (userid history turns, stored responses), readable only
    with the key that wrote them; each expires, and an account's take a bounded space."""

    async def add_conversation(self, record: ConversationRecord, quota_bytes: int) -> bool:
        """Store `record` unless the account's unexpired records and it would exceed
        `quota_bytes` of ciphertext; False (nothing stored) when they would."""
        ...
    async def conversation_bytes(self, account: str, now: float) -> int:
        """The ciphertext bytes of `account`'s unexpired records (what counts against its
        quota)."""
        ...
    async def conversation(self, account: str, record_id: str,
                           now: float) -> ConversationRecord | None:
        """`account`'s unexpired record `record_id` (None for another account's)."""
        ...
    async def conversation_turns(self, account: str, label: str,
                                 now: float) -> list[ConversationRecord]:
        """`account`'s unexpired history turns under `label`, oldest first."""
        ...
    async def delete_conversation(self, account: str, record_id: str) -> bool: ...
    async def delete_conversation_turns(self, account: str, label: str) -> int: ...
    async def delete_key_conversations(self, key_id: str) -> int:
        """Delete every record a key wrote (it was revoked: no one can read them again)."""
        ...
    async def prune_conversations(self, now: float) -> int:
        """Delete the records expired at `now`; returns how many."""
        ...


class Store(LedgerStore, PromoStore, AuditStore, DepositStore, EarningsStore, WebhookStore,
            KeyStore, ConversationStore, Protocol):
    """Everything the gateway persists, and the store's own lifecycle."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def maintain(self) -> None:
        """Housekeeping the gateway runs once a second, off the request path."""
        ...
