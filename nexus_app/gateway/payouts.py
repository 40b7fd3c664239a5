"""Payouts: a worker claims its unpaid earnings and the treasury transfers them on chain.

Crash-safe and idempotent: the earnings are set aside in the ledger first, the signed
transaction's signature is recorded before it is sent, and the payout is marked paid only
once the chain has processed it. A transaction that failed (or never landed) puts the
earnings back, claimable again; one whose outcome is unknown is settled later by
`reconcile()` from its recorded signature.
"""

from __future__ import annotations

import logging
import math
import time

from solders.pubkey import Pubkey

from nexus_app.chain.backend import (
    BLOCKHASH_LIFETIME_S,
    Chain,
    ChainError,
    ChainUnavailable,
    TransactionFailed,
)
from nexus_app.chain.treasury import Treasury
from nexus_app.gateway.errors import ApiError, Conflict
from nexus_app.gateway.store import PAYOUT_PENDING, PAYOUT_SENT, Payout, Store, WorkerEarnings
from nexus_app.ids import new_id

log = logging.getLogger(__name__)


class PayoutFailed(ApiError):
    status, type, code = 502, "server_error", "payout_failed"


class Payouts:
    def __init__(self, store: Store, chain: Chain, treasury: Treasury,
                 confirm_timeout_s: float, hold_s: float = 0.0) -> None:
        self.store = store
        self.hold_s = hold_s  # a new worker's earnings are claimable this long after its first
        self.chain = chain
        self.treasury = treasury
        # a sent payout not on chain after this long never will be: its blockhash expired
        self.expiry_s = confirm_timeout_s + BLOCKHASH_LIFETIME_S
        self._in_progress: set[str] = set()

    async def claim(self, wallet: str) -> Payout:
        """Pay all of `wallet`'s pending earnings; returns the payout (status `paid`, or
        `sent` when the chain has not confirmed it yet)."""
        await self._refuse_while_held(wallet)
        payout = await self.store.begin_payout(new_id("pay"), wallet)
        if payout is None:
            raise Conflict("No unpaid earnings to claim.", code="nothing_to_claim")
        self._in_progress.add(payout.id)
        try:
            return await self._pay(payout)
        finally:
            self._in_progress.discard(payout.id)

    async def _refuse_while_held(self, wallet: str) -> None:
        """A 409 while the hold on a new worker's earnings lasts (no ledger read without one)."""
        if not self.hold_s:
            return
        claimable_from = self.claimable_from(await self.store.worker_earnings(wallet))
        now = time.time()
        if claimable_from is not None and now < claimable_from:
            wait = math.ceil(claimable_from - now)
            raise Conflict(f"A new worker's earnings are held for {self.hold_s:g} s after its "
                           f"first earning: claimable in {wait} s. They stay yours meanwhile.",
                           code="earnings_held", retry_after=wait)

    def claimable_from(self, earnings: WorkerEarnings) -> float | None:
        """When the hold on a new worker's earnings ends (unix time), if there is one."""
        if not self.hold_s or earnings.first_earned_at is None:
            return None
        return earnings.first_earned_at + self.hold_s

    async def _pay(self, payout: Payout) -> Payout:
        try:
            blockhash = await self.chain.latest_blockhash()
        except ChainError as exc:
            await self.store.finish_payout(payout.id, paid=False)
            raise PayoutFailed(f"The chain is unavailable ({exc}); the earnings stay claimable.",
                               retry_after=10) from None
        tx = self.treasury.payout(Pubkey.from_string(payout.wallet), payout.amount, blockhash,
                                  f"NEXUS payout {payout.id}")
        signature = str(tx.signatures[0])
        await self.store.payout_sent(payout.id, signature)
        try:
            await self.chain.send(tx)
        except TransactionFailed as exc:
            await self.store.finish_payout(payout.id, paid=False)
            raise PayoutFailed(f"The payout transaction failed on chain ({exc}); the earnings "
                               "stay claimable.") from None
        except ChainUnavailable:
            log.warning("payout %s sent, not confirmed yet; will reconcile", payout.id)
            return _with(payout, PAYOUT_SENT, signature)
        done = await self.store.finish_payout(payout.id, paid=True)
        return done or _with(payout, PAYOUT_SENT, signature)

    async def reconcile(self) -> int:
        """Settle payouts left open by a crash or a chain timeout; returns how many."""
        settled = 0
        now = time.time()
        for payout in await self.store.open_payouts():
            if payout.id in self._in_progress:
                continue
            if payout.status == PAYOUT_PENDING:  # never sent: the gateway stopped first
                paid: bool | None = False
            else:
                assert payout.signature is not None
                found = await self.chain.transaction(payout.signature)
                if found is not None:
                    paid = found.succeeded
                else:
                    paid = False if now - payout.updated_at > self.expiry_s else None
            if paid is not None and await self.store.finish_payout(payout.id, paid):
                log.info("payout %s reconciled: %s", payout.id, "paid" if paid else "failed")
                settled += 1
        return settled


def _with(payout: Payout, status: str, signature: str) -> Payout:
    return Payout(payout.id, payout.wallet, payout.amount, status, signature,
                  payout.created_at, time.time())
