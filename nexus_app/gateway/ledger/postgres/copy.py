"""Moving a ledger from SQLite to PostgreSQL (`nexus-app admin migrate-ledger`): every row of
every table, into an empty PostgreSQL ledger, in one transaction that commits only when the
audit of the copy equals the audit of the original, total for total."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import asyncpg

from nexus_app.gateway.ledger.postgres.audit import PostgresAudit
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from nexus_app.gateway.ledger.records import LedgerAudit

# parents before the rows that refer to them; the pool's one row is updated, not copied
TABLES = ("accounts", "ledger", "reservations", "worker_accounts", "api_keys", "sessions",
          "deposit_intents", "deposits", "deposit_scan_cursors", "payouts", "webhooks",
          "webhook_deliveries", "webhook_models", "promo_fundings", "conversations")
CONVERT: dict[str, Callable[[Any], Any]] = {
    "bigint": int, "integer": int, "double precision": float, "bytea": bytes, "text": str}


class CopyRefused(Exception):
    """The target is not empty, or the copy does not audit like the original."""


async def copy_sqlite_ledger(source: sqlite3.Connection, target: PostgresStore,
                             original: LedgerAudit) -> LedgerAudit:
    """Copy the SQLite ledger `source` (whose audit is `original`) into the empty, migrated
    `target`; returns the copy's audit."""
    async with target.pool.acquire() as conn, conn.transaction():
        await _refuse_unless_empty(conn)
        for table in TABLES:
            await _copy_table(source, conn, table)
        pool = source.execute("SELECT balance FROM promo_pool WHERE id = 1").fetchone()[0]
        await conn.execute("UPDATE promo_pool SET balance = $1 WHERE id = 1", pool)
        await conn.execute("SELECT setval(pg_get_serial_sequence('ledger', 'id'),"
                           " GREATEST((SELECT MAX(id) FROM ledger), 1))")
        copied = await PostgresAudit.audit_on(conn)
        if copied != original or not copied.ok:
            raise CopyRefused(f"the copy does not audit like the original: {copied} "
                              f"against {original}; nothing was written")
    return copied


async def _refuse_unless_empty(conn: asyncpg.Connection) -> None:
    counts = [await conn.fetchval(f"SELECT COUNT(*) FROM {table}") for table in TABLES]
    if any(counts) or await conn.fetchval("SELECT balance FROM promo_pool WHERE id = 1"):
        raise CopyRefused("the PostgreSQL ledger is not empty: give an empty database")


async def _copy_table(source: sqlite3.Connection, conn: asyncpg.Connection,
                      table: str) -> None:
    columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
    types = dict(await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = $1 AND table_schema = current_schema()", table))
    convert = [CONVERT[types[column]] for column in columns]
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
    while rows := cursor.fetchmany(5000):
        await conn.copy_records_to_table(table, columns=columns, records=[
            tuple(None if value is None else fn(value) for fn, value in zip(convert, row,
                                                                           strict=True))
            for row in rows])
