"""`AuditStore` on PostgreSQL: the ledger's entries summed, in one snapshot, against the kept
balances."""

from __future__ import annotations

from typing import Any

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import EntryKind, LedgerAudit


class PostgresAudit(PostgresBase):
    async def audit(self) -> LedgerAudit:
        async def body(conn: asyncpg.Connection) -> LedgerAudit:
            # one consistent snapshot for all the sums, while replicas keep writing
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await self.audit_on(conn)

        return await self._read(body)

    @classmethod
    async def audit_on(cls, conn: asyncpg.Connection) -> LedgerAudit:
        """The audit in the caller's transaction (which gives the snapshot)."""
        rows = await conn.fetch("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")
        sums: dict[str, Any] = dict(rows)
        kept = await cls._kept_totals(conn)
        return LedgerAudit.of(sums, kept)

    @staticmethod
    async def _kept_totals(conn: asyncpg.Connection) -> dict[str, int]:
        """The kept balances the ledger's entries are checked against (in the caller's
        snapshot); `pool_grants` are grants without an account, into the pool. Sums of
        BIGINT are NUMERIC in PostgreSQL: read back as exact integers."""
        row = await conn.fetchrow(
            "SELECT"
            " (SELECT COALESCE(SUM(balance + free_balance), 0) FROM accounts) AS balances,"
            " (SELECT COALESCE(SUM(reserved), 0) FROM accounts) AS reserved,"
            " (SELECT COALESCE(SUM(free_balance), 0) FROM accounts) AS free_balances,"
            " (SELECT COALESCE(SUM(amount), 0) FROM reservations) AS open_reservations,"
            " (SELECT COALESCE(SUM(free_amount), 0) FROM reservations) AS free_reserved,"
            " (SELECT COALESCE(SUM(earned), 0) FROM worker_accounts) AS worker_earnings,"
            " (SELECT COALESCE(SUM(paid), 0) FROM worker_accounts) AS paid,"
            " (SELECT balance FROM promo_pool WHERE id = 1) AS pool,"
            " (SELECT COALESCE(SUM(amount), 0) FROM promo_fundings) AS promo_fundings,"
            " (SELECT COALESCE(SUM(amount), 0) FROM ledger"
            "  WHERE kind = $1 AND account IS NULL) AS pool_grants",
            EntryKind.GRANT.value,
        )
        return {name: int(value) for name, value in row.items()}
