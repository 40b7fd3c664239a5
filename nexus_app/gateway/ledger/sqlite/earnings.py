"""`EarningsStore` on SQLite: worker wallets' earnings and their payouts."""

from __future__ import annotations

import time
from typing import Any

from nexus_app.gateway.ledger.records import EntryKind, Payout, PayoutStatus, WorkerEarnings
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteEarnings(SQLiteBase):
    async def worker_earnings(self, wallet: str) -> WorkerEarnings:
        row = self.db.execute(
            "SELECT earned, paid, paying, first_earned_at FROM worker_accounts WHERE wallet = ?",
            (wallet,),
        ).fetchone()
        return WorkerEarnings(wallet, *(row or (0, 0, 0, None)))

    _PAYOUT_COLUMNS = ("id, wallet, amount, status, signature, created_at, updated_at,"
                       " last_valid_block_height")

    async def begin_payout(self, payout_id: str, wallet: str, minimum: int = 1) -> Payout | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT earned - paid - paying FROM worker_accounts WHERE wallet = ?", (wallet,)
            ).fetchone()
            amount = row[0] if row else 0
            if amount < max(1, minimum) or not db.execute(
                "UPDATE worker_accounts SET paying = paying + ?"
                " WHERE wallet = ? AND earned - paid - paying >= ?",
                (amount, wallet, amount),
            ).rowcount:
                return None
            db.execute(
                f"INSERT INTO payouts ({self._PAYOUT_COLUMNS})"
                " VALUES (?, ?, ?, ?, NULL, ?, ?, NULL)",
                (payout_id, wallet, amount, PayoutStatus.PENDING, now, now),
            )
        return Payout(payout_id, wallet, amount, PayoutStatus.PENDING, None, now, now)

    async def payout_sent(self, payout_id: str, signature: str,
                          last_valid_block_height: int | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE payouts SET status = ?, signature = ?, last_valid_block_height = ?,"
                " updated_at = ? WHERE id = ? AND status = ?",
                (PayoutStatus.SENT, signature, last_valid_block_height, time.time(), payout_id,
                 PayoutStatus.PENDING),
            )

    async def payout_deadline(self, payout_id: str, last_valid_block_height: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE payouts SET last_valid_block_height = ? WHERE id = ? AND status = ?"
                " AND last_valid_block_height IS NULL",
                (last_valid_block_height, payout_id, PayoutStatus.SENT),
            )

    async def finish_payout(self, payout_id: str, paid: bool) -> Payout | None:
        with self._tx() as db:
            row = db.execute(
                "UPDATE payouts SET status = ?, updated_at = ? WHERE id = ? AND status IN (?, ?)"
                f" RETURNING {self._PAYOUT_COLUMNS}",
                (PayoutStatus.PAID if paid else PayoutStatus.FAILED, time.time(), payout_id,
                 PayoutStatus.PENDING, PayoutStatus.SENT),
            ).fetchone()
            if row is None:
                return None
            payout = _payout(row)
            db.execute(
                "UPDATE worker_accounts SET paying = paying - ?, paid = paid + ? WHERE wallet = ?",
                (payout.amount, payout.amount if paid else 0, payout.wallet),
            )
            if paid:
                self._entry(db, EntryKind.PAYOUT, payout.amount, wallet=payout.wallet,
                            ref=payout.id)
        return payout

    async def open_payouts(self) -> list[Payout]:
        rows = self.db.execute(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE status IN (?, ?)",
            (PayoutStatus.PENDING, PayoutStatus.SENT),
        ).fetchall()
        return [_payout(row) for row in rows]

    async def payouts(self, wallet: str, limit: int) -> list[Payout]:
        rows = self.db.execute(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE wallet = ?"
            " ORDER BY created_at DESC LIMIT ?",
            (wallet, limit),
        ).fetchall()
        return [_payout(row) for row in rows]

    async def earnings_by_hour(self, wallet: str, since: float) -> list[tuple[int, int, int]]:
        rows = self.db.execute(
            "SELECT CAST(at AS INTEGER) / 3600 * 3600 AS hour, SUM(amount), COUNT(*)"
            " FROM ledger WHERE kind = ? AND wallet = ? AND at >= ?"
            " GROUP BY hour ORDER BY hour",
            (EntryKind.WORKER_EARNING.value, wallet, since),
        ).fetchall()
        return [(int(hour), int(amount), int(jobs)) for hour, amount, jobs in rows]


def _payout(row: tuple[Any, ...]) -> Payout:
    payout_id, wallet, amount, status, *rest = row
    return Payout(payout_id, wallet, amount, PayoutStatus(status), *rest)
