"""`DepositStore` on PostgreSQL: deposit intents, the deposits that paid them, and where the
deposit watcher stopped reading."""

from __future__ import annotations

import time

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import DepositEntry, DepositIntentRecord, EntryKind

INTENT_LOCK = 1  # the first key of the per-account advisory lock on adding intents


class PostgresDeposits(PostgresBase):
    _INTENT_COLUMNS = "id, account, reference, amount, memo, created_at, expires_at"

    _UNCREDITED = "NOT EXISTS (SELECT 1 FROM deposits d WHERE d.reference = i.reference)"

    async def add_deposit_intent(self, intent: DepositIntentRecord, max_open: int) -> bool:
        async def body(conn: asyncpg.Connection) -> bool:
            # a lock per account (till commit) queues two replicas adding intents for one
            # account, so that the count below cannot be passed by both at once
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                               INTENT_LOCK, intent.account)
            status = await conn.execute(
                f"INSERT INTO deposit_intents ({self._INTENT_COLUMNS})"
                " SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT COUNT(*) FROM deposit_intents i"
                f" WHERE account = $2 AND expires_at > $6 AND {self._UNCREDITED}) < $8",
                intent.id, intent.account, intent.reference, intent.amount, intent.memo,
                intent.created_at, intent.expires_at, max_open,
            )
            return status != "INSERT 0 0"

        return await self._tx(body)

    async def deposit_intent(self, reference: str) -> DepositIntentRecord | None:
        row = await self._read(lambda conn: conn.fetchrow(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents WHERE reference = $1",
            reference))
        return DepositIntentRecord(*row) if row else None

    async def open_deposit_intents(self, now: float, account: str | None = None,
                                   limit: int | None = None) -> list[DepositIntentRecord]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents i WHERE expires_at > $1"
            f" AND ($2::text IS NULL OR account = $2) AND {self._UNCREDITED}"
            " ORDER BY expires_at LIMIT $3",
            now, account, limit))
        return [DepositIntentRecord(*row) for row in rows]

    async def prune_deposit_intents(self, expired_before: float) -> int:
        status = await self._tx(lambda conn: conn.execute(
            f"DELETE FROM deposit_intents AS i WHERE expires_at < $1 AND {self._UNCREDITED}",
            expired_before))
        return _count(status)

    async def deposit_scan_cursor(self, address: str) -> str | None:
        return await self._read(lambda conn: conn.fetchval(  # type: ignore[no-any-return]
            "SELECT signature FROM deposit_scan_cursors WHERE address = $1", address))

    async def set_deposit_scan_cursor(self, address: str, signature: str) -> None:
        await self._tx(lambda conn: conn.execute(
            "INSERT INTO deposit_scan_cursors (address, signature) VALUES ($1, $2)"
            " ON CONFLICT (address) DO UPDATE SET signature = excluded.signature",
            address, signature))

    async def credit_deposit(self, signature: str, intent: DepositIntentRecord) -> bool:
        async def body(conn: asyncpg.Connection) -> bool:
            inserted = await conn.execute(
                "INSERT INTO deposits (signature, reference, account, amount, credited_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signature) DO NOTHING",
                signature, intent.reference, intent.account, intent.amount, time.time(),
            )
            if inserted == "INSERT 0 0":
                return False
            await self._ensure_account(conn, intent.account)
            await conn.execute(
                "UPDATE accounts SET balance = balance + $1, updated_at = $2 WHERE account = $3",
                intent.amount, time.time(), intent.account,
            )
            await self._entry(conn, EntryKind.DEPOSIT, intent.amount, account=intent.account,
                              ref=signature)
            return True

        return await self._tx(body)

    async def deposit_history(self, account: str, limit: int) -> list[DepositEntry]:
        columns = ", ".join(f"i.{c.strip()}" for c in self._INTENT_COLUMNS.split(","))
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {columns}, d.signature, d.credited_at FROM deposit_intents i"
            " LEFT JOIN deposits d ON d.reference = i.reference WHERE i.account = $1"
            " ORDER BY i.created_at DESC LIMIT $2",
            account, limit))
        return [DepositEntry(DepositIntentRecord(*row[:7]), row[7], row[8]) for row in rows]


def _count(status: str) -> int:
    """The row count of a command's status ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])
