"""Payouts: a worker claims its unpaid earnings and the treasury transfers them on chain.

Crash-safe and idempotent: the earnings are set aside in the ledger first, the signed
transaction's signature and the last block height its blockhash is valid for are recorded
before it is sent, and the payout is marked paid only once the chain has processed it.

A payout is failed (its earnings claimable again) only on the chain's own verdict: the
transaction was refused or executed with an error, or the chain's block height passed its
last valid block height with no transaction for its signature, so it can never land. An RPC
error or a timeout is *unknown*: the payout stays `sent` and `reconcile()` settles it later.
Anything else would let a transfer that still lands be paid a second time.

The treasury pays only the transfer's fee: a claim is refused until the worker's associated
token account exists (the worker creates it with its own SOL), and below `min_payout`.
"""

from __future__ import annotations

import logging
import math
import time

from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.chain.backend import (
    BLOCKHASH_LIFETIME_BLOCKS,
    Chain,
    ChainError,
    ChainUnavailable,
    TransactionFailed,
)
from nexus_app.chain.treasury import Treasury
from nexus_app.gateway.errors import ApiError, BadRequest, Conflict
from nexus_app.gateway.ledger.records import Payout, PayoutStatus, WorkerEarnings
from nexus_app.gateway.ledger.store import EarningsStore
from nexus_app.gateway.money.deposits import ChainDown
from nexus_app.ids import new_id
from nexus_app.units import format_units

log = logging.getLogger(__name__)


class PayoutFailed(ApiError):
    status, type, code = 502, "server_error", "payout_failed"


class Payouts:
    def __init__(self, store: EarningsStore, chain: Chain, treasury: Treasury,
                 hold_s: float = 0.0, min_payout: int = 1) -> None:
        self.store = store
        self.hold_s = hold_s  # a new worker's earnings are claimable this long after its first
        self.min_payout = max(1, min_payout)  # base units: smaller claims are refused
        self.chain = chain
        self.treasury = treasury
        self._in_progress: set[str] = set()

    async def claim(self, wallet: str) -> Payout:
        """Pay all of `wallet`'s pending earnings; returns the payout (status `paid`, or
        `sent` when the chain has not confirmed it yet)."""
        earnings = await self.store.worker_earnings(wallet)
        self._refuse_while_held(earnings)
        self._refuse_below_minimum(earnings)
        await self._refuse_without_token_account(wallet)
        payout = await self.store.begin_payout(new_id("pay"), wallet, self.min_payout)
        if payout is None:
            raise Conflict("No unpaid earnings to claim.", code="nothing_to_claim")
        self._in_progress.add(payout.id)
        try:
            return await self._pay(payout)
        finally:
            self._in_progress.discard(payout.id)

    def _refuse_while_held(self, earnings: WorkerEarnings) -> None:
        """A 409 while the hold on a new worker's earnings lasts."""
        claimable_from = self.claimable_from(earnings)
        now = time.time()
        if claimable_from is not None and now < claimable_from:
            wait = math.ceil(claimable_from - now)
            raise Conflict(f"A new worker's earnings are held for {self.hold_s:g} s after its "
                           f"first earning: claimable in {wait} s. They stay yours meanwhile.",
                           code="earnings_held", retry_after=wait)

    def _refuse_below_minimum(self, earnings: WorkerEarnings) -> None:
        """A 409 when the pending earnings are fewer than the minimum payout (a payout's fee
        must be worth it); a 409 nothing_to_claim when there are none."""
        if earnings.pending <= 0:
            raise Conflict("No unpaid earnings to claim.", code="nothing_to_claim")
        if earnings.pending < self.min_payout:
            decimals = self.treasury.decimals
            raise Conflict(
                f"The minimum payout is {format_units(self.min_payout, decimals)} NEXUS; "
                f"pending earnings are {format_units(earnings.pending, decimals)} NEXUS. "
                "They stay yours: claim once they reach the minimum.",
                code="below_min_payout")

    async def _refuse_without_token_account(self, wallet: str) -> None:
        """A 400 until the wallet's associated token account exists: paying into a missing one
        would make the treasury pay its rent (a worker could close it and claim again)."""
        account = token.associated_token_address(Pubkey.from_string(wallet), self.treasury.mint)
        try:
            exists = await self.chain.account_exists(account)
        except ChainError as exc:
            raise ChainDown(f"The chain is unavailable ({exc}); the earnings stay claimable.",
                            retry_after=10) from None
        if not exists:
            raise BadRequest(
                f"Your wallet has no $NEXUS token account ({account}) on chain yet. Create it "
                "with your own SOL first (`nexus-app claim` and the terminal app do; or POST "
                "/v1/workers/token-account), then claim again.",
                code="token_account_missing")

    def claimable_from(self, earnings: WorkerEarnings) -> float | None:
        """When the hold on a new worker's earnings ends (unix time), if there is one."""
        if not self.hold_s or earnings.first_earned_at is None:
            return None
        return earnings.first_earned_at + self.hold_s

    async def _pay(self, payout: Payout) -> Payout:
        try:
            recent = await self.chain.recent_blockhash()
        except ChainError as exc:  # nothing was signed: the earnings go back at once
            await self.store.finish_payout(payout.id, paid=False)
            raise PayoutFailed(f"The chain is unavailable ({exc}); the earnings stay claimable.",
                               retry_after=10) from None
        tx = self.treasury.payout(Pubkey.from_string(payout.wallet), payout.amount,
                                  recent.blockhash, f"NEXUS payout {payout.id}")
        signature = str(tx.signatures[0])
        await self.store.payout_sent(payout.id, signature, recent.last_valid_block_height)
        sent = _with(payout, PayoutStatus.SENT, signature, recent.last_valid_block_height)
        try:
            await self.chain.send(tx)
        except TransactionFailed as exc:
            await self.store.finish_payout(payout.id, paid=False)
            raise PayoutFailed(f"The payout transaction failed on chain ({exc}); the earnings "
                               "stay claimable.") from None
        except ChainUnavailable as exc:
            log.warning("payout %s sent, outcome unknown (%s); will reconcile", payout.id, exc)
            return sent
        done = await self.store.finish_payout(payout.id, paid=True)
        return done or sent

    async def reconcile(self) -> int:
        """Settle payouts left open by a crash, an RPC error or a chain timeout; returns how
        many. One payout the chain cannot answer for waits for the next round."""
        settled = 0
        for payout in await self.store.open_payouts():
            if payout.id in self._in_progress:
                continue
            try:
                paid = await self._outcome(payout)
            except ChainError as exc:
                log.warning("payout %s not reconciled yet: %s", payout.id, exc)
                continue
            if paid is not None and await self.store.finish_payout(payout.id, paid):
                log.info("payout %s reconciled: %s", payout.id, "paid" if paid else "failed")
                settled += 1
        return settled

    async def _outcome(self, payout: Payout) -> bool | None:
        """True: paid; False: failed, it can never land; None: not known yet."""
        if payout.status == PayoutStatus.PENDING:  # never sent: the gateway stopped first
            return False
        assert payout.signature is not None
        found = await self.chain.transaction(payout.signature)
        if found is not None:
            return found.succeeded
        height = await self.chain.block_height()
        if payout.last_valid_block_height is None:  # sent before heights were recorded
            # its blockhash is older than now, so it expires at most a lifetime from now
            await self.store.payout_deadline(payout.id, height + BLOCKHASH_LIFETIME_BLOCKS)
            return None
        if height <= payout.last_valid_block_height:
            return None
        # past its last valid height: if it ever landed, it is visible now (read after the
        # height, so a transfer processed in between is not missed)
        found = await self.chain.transaction(payout.signature)
        return found.succeeded if found is not None else False


def _with(payout: Payout, status: PayoutStatus, signature: str, last_valid: int) -> Payout:
    return Payout(payout.id, payout.wallet, payout.amount, status, signature,
                  payout.created_at, time.time(), last_valid)
