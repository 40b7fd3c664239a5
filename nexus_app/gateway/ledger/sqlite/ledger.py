"""`LedgerStore` on SQLite: grants, reservations and how they close, balances."""

from __future__ import annotations

import sqlite3
import time

from nexus_app.gateway.ledger.records import AccountBalance, EntryKind, Settlement
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteLedger(SQLiteBase):
    async def grant(self, account: str, amount: int, memo: str) -> None:
        if amount <= 0:
            raise ValueError("a grant is a positive amount")
        with self._tx() as db:
            self._ensure_account(db, account)
            db.execute(
                "UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE account = ?",
                (amount, time.time(), account),
            )
            self._entry(db, EntryKind.GRANT, amount, account=account, ref=memo)

    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT free_balance FROM accounts WHERE account = ?", (account,)
            ).fetchone()
            free = min(row[0], amount) if row else 0
            moved = db.execute(
                "UPDATE accounts SET free_balance = free_balance - ?, balance = balance - ?,"
                " reserved = reserved + ?, updated_at = ?"
                " WHERE account = ? AND free_balance >= ? AND balance >= ?",
                (free, amount - free, amount, time.time(), account, free, amount - free),
            ).rowcount
            if not moved:
                return False
            db.execute(
                "INSERT INTO reservations (id, account, amount, free_amount, created_at,"
                " replica) VALUES (?, ?, ?, ?, ?, ?)",
                (reservation_id, account, amount, free, time.time(), self.replica),
            )
            self._entry(db, EntryKind.RESERVE, amount, account=account, ref=reservation_id)
        return True

    async def settle(self, reservation_id: str, settlement: Settlement) -> bool:
        s = settlement
        if s.worker_amount + s.treasury_amount != s.cost or min(s.cost, s.worker_amount) < 0:
            raise ValueError("settlement parts must add up to the cost")
        with self._tx() as db:
            row = self._take_reservation(db, reservation_id)
            if row is None:
                return False
            account, reserved, free = row
            if s.cost > reserved:
                raise ValueError("cannot settle more than was reserved")
            free_back = free - min(free, s.cost)  # the cost is paid from free credit first
            self._return(db, account, reserved, reserved - s.cost - free_back, free_back,
                         spent=s.cost)
            if s.worker_amount:
                if not s.worker_wallet:
                    raise ValueError("a worker earning needs a wallet")
                db.execute(
                    "INSERT INTO worker_accounts (wallet, earned, first_earned_at)"
                    " VALUES (?, ?, ?)"
                    " ON CONFLICT (wallet) DO UPDATE SET earned = earned + excluded.earned",
                    (s.worker_wallet, s.worker_amount, time.time()),
                )
            self._entries(db, [
                (EntryKind.SETTLE, s.cost, account, None, reservation_id),
                (EntryKind.FREE_SPENT, min(free, s.cost), account, None, reservation_id),
                (EntryKind.REFUND, reserved - s.cost, account, None, reservation_id),
                (EntryKind.WORKER_EARNING, s.worker_amount, None, s.worker_wallet,
                 reservation_id),
                (EntryKind.TREASURY_FEE, s.treasury_amount, None, None, reservation_id),
            ])
        return True

    async def release(self, reservation_id: str) -> bool:
        with self._tx() as db:
            return self._release(db, reservation_id)

    async def release_all_open(self) -> int:
        return await self.release_replica(self.replica)

    async def release_replica(self, replica: str) -> int:
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM reservations WHERE replica = ?", (replica,)).fetchall()]
            for reservation_id in ids:
                self._release(db, reservation_id)
        return len(ids)

    def _release(self, db: sqlite3.Connection, reservation_id: str) -> bool:
        row = self._take_reservation(db, reservation_id)
        if row is None:
            return False
        account, amount, free = row
        self._return(db, account, amount, amount - free, free)
        self._entry(db, EntryKind.REFUND, amount, account=account, ref=reservation_id)
        return True

    @staticmethod
    def _take_reservation(db: sqlite3.Connection,
                          reservation_id: str) -> tuple[str, int, int] | None:
        """Close an open reservation: its (account, amount, free part), or None when it is
        not open (so settling or releasing it twice changes nothing)."""
        row = db.execute(
            "DELETE FROM reservations WHERE id = ? RETURNING account, amount, free_amount",
            (reservation_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    @staticmethod
    def _return(db: sqlite3.Connection, account: str, reserved: int, paid: int, free: int,
                spent: int = 0) -> None:
        """Close `reserved` on the account: `spent` is charged, `paid` and `free` credit
        go back."""
        db.execute(
            "UPDATE accounts SET reserved = reserved - ?, balance = balance + ?,"
            " free_balance = free_balance + ?, total_spent = total_spent + ?, updated_at = ?"
            " WHERE account = ?",
            (reserved, paid, free, spent, time.time(), account),
        )

    async def balance(self, account: str) -> AccountBalance:
        row = self.db.execute(
            "SELECT balance, reserved, total_spent, updated_at, free_balance FROM accounts"
            " WHERE account = ?",
            (account,),
        ).fetchone()
        if row is None:
            return AccountBalance(account, 0, 0, 0, 0.0)
        return AccountBalance(account, *row)
