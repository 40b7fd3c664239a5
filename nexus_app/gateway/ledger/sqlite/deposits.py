"""`DepositStore` on SQLite: deposit intents, the deposits that paid them, and where the
deposit watcher stopped reading."""

from __future__ import annotations

import time

from nexus_app.gateway.ledger.records import DepositEntry, DepositIntentRecord, EntryKind
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteDeposits(SQLiteBase):
    _INTENT_COLUMNS = "id, account, reference, amount, memo, created_at, expires_at"

    _UNCREDITED = "NOT EXISTS (SELECT 1 FROM deposits d WHERE d.reference = i.reference)"

    async def add_deposit_intent(self, intent: DepositIntentRecord, max_open: int) -> bool:
        with self._tx() as db:
            return bool(db.execute(
                f"INSERT INTO deposit_intents ({self._INTENT_COLUMNS})"
                " SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM deposit_intents i"
                f" WHERE account = ? AND expires_at > ? AND {self._UNCREDITED}) < ?",
                (intent.id, intent.account, intent.reference, intent.amount, intent.memo,
                 intent.created_at, intent.expires_at, intent.account, intent.created_at,
                 max_open),
            ).rowcount)

    async def deposit_intent(self, reference: str) -> DepositIntentRecord | None:
        row = self.db.execute(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents WHERE reference = ?",
            (reference,),
        ).fetchone()
        return DepositIntentRecord(*row) if row else None

    async def open_deposit_intents(self, now: float, account: str | None = None,
                                   limit: int | None = None) -> list[DepositIntentRecord]:
        rows = self.db.execute(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents i WHERE expires_at > ?"
            f" AND (? IS NULL OR account = ?) AND {self._UNCREDITED}"
            " ORDER BY expires_at LIMIT ?",
            (now, account, account, -1 if limit is None else limit),
        ).fetchall()
        return [DepositIntentRecord(*row) for row in rows]

    async def prune_deposit_intents(self, expired_before: float) -> int:
        with self._tx() as db:
            return int(db.execute(
                f"DELETE FROM deposit_intents AS i WHERE expires_at < ? AND {self._UNCREDITED}",
                (expired_before,),
            ).rowcount)

    async def deposit_scan_cursor(self, address: str) -> str | None:
        row = self.db.execute(
            "SELECT signature FROM deposit_scan_cursors WHERE address = ?", (address,)
        ).fetchone()
        return row[0] if row else None

    async def set_deposit_scan_cursor(self, address: str, signature: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO deposit_scan_cursors (address, signature) VALUES (?, ?)"
                " ON CONFLICT (address) DO UPDATE SET signature = excluded.signature",
                (address, signature),
            )

    async def credit_deposit(self, signature: str, intent: DepositIntentRecord) -> bool:
        with self._tx() as db:
            inserted = db.execute(
                "INSERT INTO deposits (signature, reference, account, amount, credited_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (signature) DO NOTHING",
                (signature, intent.reference, intent.account, intent.amount, time.time()),
            ).rowcount
            if not inserted:
                return False
            self._ensure_account(db, intent.account)
            db.execute(
                "UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE account = ?",
                (intent.amount, time.time(), intent.account),
            )
            self._entry(db, EntryKind.DEPOSIT, intent.amount, account=intent.account,
                        ref=signature)
        return True

    async def deposit_history(self, account: str, limit: int) -> list[DepositEntry]:
        columns = ", ".join(f"i.{c.strip()}" for c in self._INTENT_COLUMNS.split(","))
        rows = self.db.execute(
            f"SELECT {columns}, d.signature, d.credited_at FROM deposit_intents i"
            " LEFT JOIN deposits d ON d.reference = i.reference WHERE i.account = ?"
            " ORDER BY i.created_at DESC LIMIT ?",
            (account, limit),
        ).fetchall()
        return [DepositEntry(DepositIntentRecord(*row[:7]), row[7], row[8]) for row in rows]
