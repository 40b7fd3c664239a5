"""`PromoStore` on PostgreSQL: the promotional pool and the weekly free credit issued from
it."""

from __future__ import annotations

import time

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import EntryKind, FreeTopUp


class PostgresPromo(PostgresBase):
    async def top_up_free_credit(self, account: str, week: int, amount: int) -> FreeTopUp:
        short = await self._free_credit_short(account, week)
        if short is not None:
            return FreeTopUp(short=short)
        return await self._tx(lambda conn: self._top_up(conn, account, week, amount))

    async def _top_up(self, conn: asyncpg.Connection, account: str, week: int,
                      amount: int) -> FreeTopUp:
        await self._ensure_account(conn, account)
        # the account row, then the pool's: the order every transaction takes them in
        free, last_week, short = await conn.fetchrow(
            "SELECT free_balance, free_week, free_short FROM accounts WHERE account = $1"
            " FOR UPDATE", account)
        new_week = last_week is None or last_week < week
        if not new_week and not short:
            return FreeTopUp()
        lapsed = free if new_week else 0
        wanted = amount if new_week else short
        pool = await conn.fetchval("SELECT balance FROM promo_pool WHERE id = 1 FOR UPDATE")
        granted = min(wanted, pool + lapsed)
        # the CHECKs (pool and free balance >= 0) refuse any overdraw inside the statements
        await conn.execute("UPDATE promo_pool SET balance = balance + $1 - $2 WHERE id = 1",
                           lapsed, granted)
        await conn.execute(
            "UPDATE accounts SET free_balance = free_balance - $1 + $2, free_short = $3,"
            " free_week = $4, updated_at = $5 WHERE account = $6",
            lapsed, granted, wanted - granted, week if new_week else last_week, time.time(),
            account,
        )
        await self._entries(conn, [
            (EntryKind.FREE_CREDIT_LAPSE, lapsed, account, None, f"week {last_week}"),
            (EntryKind.FREE_CREDIT, granted, account, None, f"week {week}"),
        ])
        return FreeTopUp(granted, lapsed, wanted - granted)

    async def _free_credit_short(self, account: str, week: int) -> int | None:
        """What the pool still owes the account this week when a top-up would change nothing
        (issued in full, or the pool is empty); None when there is something to do. A read,
        without row locks."""
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT a.free_week, a.free_short, p.balance FROM accounts a, promo_pool p"
            " WHERE a.account = $1 AND p.id = 1", account))
        if row is None or row[0] is None or row[0] < week:
            return None
        return int(row[1]) if row[1] == 0 or row[2] == 0 else None

    async def credit_promo_funding(self, signature: str, amount: int, source: str) -> bool:
        if amount <= 0:
            raise ValueError("a pool funding is a positive amount")

        async def body(conn: asyncpg.Connection) -> bool:
            if await conn.fetchval("SELECT 1 FROM deposits WHERE signature = $1", signature):
                return False
            inserted = await conn.execute(
                "INSERT INTO promo_fundings (signature, amount, source, credited_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (signature) DO NOTHING",
                signature, amount, source, time.time(),
            )
            if inserted == "INSERT 0 0":
                return False
            await conn.execute("UPDATE promo_pool SET balance = balance + $1 WHERE id = 1",
                               amount)
            await self._entry(conn, EntryKind.PROMO_FUNDING, amount, ref=signature)
            return True

        return await self._tx(body)

    async def promo_pool(self) -> int:
        return int(await self._read(
            lambda conn: conn.fetchval("SELECT balance FROM promo_pool WHERE id = 1")))
