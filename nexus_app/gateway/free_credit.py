"""The optional weekly free credit: each account's free credit is topped up to the week's
amount on its first request (or balance check) of the week. Free credit is spent before paid
credit and never carries over past one week's amount."""

from __future__ import annotations

import time

from nexus_app.gateway.store import Store

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday


def week_number(now: float, weekday: int) -> int:
    """Weeks since the epoch, each starting on `weekday` (0 is Monday) at 00:00 UTC."""
    return (int(now // 86400) + _EPOCH_WEEKDAY - weekday) // 7


class FreeCredit:
    def __init__(self, store: Store, amount: int, weekday: str) -> None:
        self.store = store
        self.amount = amount
        self.weekday = WEEKDAYS.index(weekday)
        self._week = -1
        self._topped_up: set[str] = set()  # accounts already topped up this week

    async def top_up(self, account: str, now: float | None = None) -> None:
        """Grant this week's free credit to `account` if it has not had it yet."""
        if self.amount <= 0:
            return
        week = week_number(time.time() if now is None else now, self.weekday)
        if week != self._week:
            self._week, self._topped_up = week, set()
        if account not in self._topped_up:
            await self.store.top_up_free_credit(account, week, self.amount)
            self._topped_up.add(account)
