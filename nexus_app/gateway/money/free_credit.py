"""The optional weekly free credit, backed by the promotional pool.

Each account's free credit is issued on its first request (or balance check) of the week,
out of the pool the operator funded on chain (`nexus-app admin fund-promo`): issuing moves
units from the pool to the account, and the unspent free credit of a past week goes back to
the pool first. When the pool is short an account gets what is left (or nothing), and the rest
once the pool is funded again that week; free credit is never created out of nothing, so what
a worker earns from it is paid from tokens really in the treasury. Free credit is spent before
paid credit and never carries over past one week.
"""

from __future__ import annotations

import logging
import time

from nexus_app.gateway.ledger.records import FreeTopUp
from nexus_app.gateway.ledger.store import PromoStore

log = logging.getLogger(__name__)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday


def week_number(now: float, weekday: int) -> int:
    """Weeks since the epoch, each starting on `weekday` (0 is Monday) at 00:00 UTC."""
    return (int(now // 86400) + _EPOCH_WEEKDAY - weekday) // 7


class FreeCredit:
    def __init__(self, store: PromoStore, amount: int, weekday: str) -> None:
        self.store = store
        self.amount = amount
        self.weekday = WEEKDAYS.index(weekday)
        self._week = -1
        # accounts issued this week's credit in full: no ledger call for them until next week
        self._topped_up: set[str] = set()

    async def top_up(self, account: str, now: float | None = None) -> FreeTopUp:
        """Issue this week's free credit to `account` from the pool, if it is still owed."""
        if self.amount <= 0:
            return FreeTopUp()
        week = week_number(time.time() if now is None else now, self.weekday)
        if week != self._week:
            self._week, self._topped_up = week, set()
        if account in self._topped_up:
            return FreeTopUp()
        result = await self.store.top_up_free_credit(account, week, self.amount)
        if not result.short:
            self._topped_up.add(account)
        return result

    async def warn_if_unfunded(self) -> None:
        """Say at start when free credit is on but the pool cannot issue any."""
        pool = await self.store.promo_pool() if self.amount > 0 else 0
        if self.amount > 0 and pool < self.amount:
            log.warning(
                "free_credit_weekly is set but the promotional pool holds %d base units (less "
                "than one account's week): free credit is issued only from the pool; fund it "
                "with `nexus-app admin fund-promo AMOUNT`", pool)
