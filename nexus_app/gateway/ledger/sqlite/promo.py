"""`PromoStore` on SQLite: the promotional pool and the weekly free credit issued from it."""

from __future__ import annotations

import time

from nexus_app.gateway.ledger.records import EntryKind, FreeTopUp
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLitePromo(SQLiteBase):
    async def top_up_free_credit(self, account: str, week: int, amount: int) -> FreeTopUp:
        short = self._free_credit_short(account, week)
        if short is not None:
            return FreeTopUp(short=short)
        with self._tx() as db:
            self._ensure_account(db, account)
            free, last_week, short = db.execute(
                "SELECT free_balance, free_week, free_short FROM accounts WHERE account = ?",
                (account,),
            ).fetchone()
            new_week = last_week is None or last_week < week
            if not new_week and not short:
                return FreeTopUp()
            lapsed = free if new_week else 0
            wanted = amount if new_week else short
            pool = db.execute("SELECT balance FROM promo_pool WHERE id = 1").fetchone()[0]
            granted = min(wanted, pool + lapsed)
            # the CHECKs (pool and free balance >= 0) refuse any overdraw inside the statements
            db.execute("UPDATE promo_pool SET balance = balance + ? - ? WHERE id = 1",
                       (lapsed, granted))
            db.execute(
                "UPDATE accounts SET free_balance = free_balance - ? + ?, free_short = ?,"
                " free_week = ?, updated_at = ? WHERE account = ?",
                (lapsed, granted, wanted - granted, week if new_week else last_week,
                 time.time(), account),
            )
            self._entries(db, [
                (EntryKind.FREE_CREDIT_LAPSE, lapsed, account, None, f"week {last_week}"),
                (EntryKind.FREE_CREDIT, granted, account, None, f"week {week}"),
            ])
        return FreeTopUp(granted, lapsed, wanted - granted)

    def _free_credit_short(self, account: str, week: int) -> int | None:
        """What the pool still owes the account this week when a top-up would change nothing
        (issued in full, or the pool is empty); None when there is something to do. A read,
        without the write lock."""
        row = self.db.execute(
            "SELECT a.free_week, a.free_short, p.balance FROM accounts a, promo_pool p"
            " WHERE a.account = ? AND p.id = 1",
            (account,),
        ).fetchone()
        if row is None or row[0] is None or row[0] < week:
            return None
        return int(row[1]) if row[1] == 0 or row[2] == 0 else None

    async def credit_promo_funding(self, signature: str, amount: int, source: str) -> bool:
        if amount <= 0:
            raise ValueError("a pool funding is a positive amount")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM deposits WHERE signature = ?", (signature,)).fetchone():
                return False
            if not db.execute(
                "INSERT INTO promo_fundings (signature, amount, source, credited_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (signature) DO NOTHING",
                (signature, amount, source, time.time()),
            ).rowcount:
                return False
            db.execute("UPDATE promo_pool SET balance = balance + ? WHERE id = 1", (amount,))
            self._entry(db, EntryKind.PROMO_FUNDING, amount, ref=signature)
        return True

    async def promo_pool(self) -> int:
        return int(self.db.execute("SELECT balance FROM promo_pool WHERE id = 1").fetchone()[0])
