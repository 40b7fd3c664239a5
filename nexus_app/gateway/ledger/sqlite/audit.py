"""`AuditStore` on SQLite: the ledger's entries summed, in one snapshot, against the kept
balances."""

from __future__ import annotations

import sqlite3

from nexus_app.gateway.ledger.records import EntryKind, LedgerAudit
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteAudit(SQLiteBase):
    async def audit(self) -> LedgerAudit:
        db = self.db
        db.execute("BEGIN")  # one consistent snapshot for all the sums
        try:
            sums = dict(db.execute("SELECT kind, SUM(amount) FROM ledger GROUP BY kind").fetchall())
            kept = self._kept_totals(db)
        finally:
            db.execute("COMMIT")
        return LedgerAudit.of(sums, kept)

    @staticmethod
    def _kept_totals(db: sqlite3.Connection) -> dict[str, int]:
        """The kept balances the ledger's entries are checked against (in the caller's
        snapshot); `pool_grants` are grants without an account, into the pool."""
        def one(sql: str, *args: str) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        kept: dict[str, int] = {}
        (kept["balances"], kept["reserved"], kept["free_balances"]) = db.execute(
            "SELECT COALESCE(SUM(balance + free_balance), 0), COALESCE(SUM(reserved), 0),"
            " COALESCE(SUM(free_balance), 0) FROM accounts"
        ).fetchone()
        kept["open_reservations"], kept["free_reserved"] = db.execute(
            "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(free_amount), 0) FROM reservations"
        ).fetchone()
        kept["worker_earnings"], kept["paid"] = db.execute(
            "SELECT COALESCE(SUM(earned), 0), COALESCE(SUM(paid), 0) FROM worker_accounts"
        ).fetchone()
        kept["pool"] = one("SELECT balance FROM promo_pool WHERE id = 1")
        kept["promo_fundings"] = one("SELECT COALESCE(SUM(amount), 0) FROM promo_fundings")
        kept["pool_grants"] = one("SELECT COALESCE(SUM(amount), 0) FROM ledger"
                                  " WHERE kind = ? AND account IS NULL", EntryKind.GRANT.value)
        return kept
