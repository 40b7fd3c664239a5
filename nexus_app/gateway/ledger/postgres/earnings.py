"""`EarningsStore` on PostgreSQL: worker wallets' earnings and their payouts."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import EntryKind, Payout, PayoutStatus, WorkerEarnings


class PostgresEarnings(PostgresBase):
    async def worker_earnings(self, wallet: str) -> WorkerEarnings:
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT earned, paid, paying, first_earned_at FROM worker_accounts"
            " WHERE wallet = $1", wallet))
        return WorkerEarnings(wallet, *(row or (0, 0, 0, None)))

    _PAYOUT_COLUMNS = ("id, wallet, amount, status, signature, created_at, updated_at,"
                       " last_valid_block_height")

    async def begin_payout(self, payout_id: str, wallet: str, minimum: int = 1) -> Payout | None:
        now = time.time()

        async def body(conn: asyncpg.Connection) -> Payout | None:
            amount = await conn.fetchval(
                "SELECT earned - paid - paying FROM worker_accounts WHERE wallet = $1"
                " FOR UPDATE", wallet) or 0
            if amount < max(1, minimum) or await conn.execute(
                "UPDATE worker_accounts SET paying = paying + $1"
                " WHERE wallet = $2 AND earned - paid - paying >= $1",
                amount, wallet,
            ) == "UPDATE 0":
                return None
            await conn.execute(
                f"INSERT INTO payouts ({self._PAYOUT_COLUMNS})"
                " VALUES ($1, $2, $3, $4, NULL, $5, $5, NULL)",
                payout_id, wallet, amount, PayoutStatus.PENDING.value, now,
            )
            return Payout(payout_id, wallet, amount, PayoutStatus.PENDING, None, now, now)

        return await self._tx(body)

    async def payout_sent(self, payout_id: str, signature: str,
                          last_valid_block_height: int | None = None) -> None:
        await self._tx(lambda conn: conn.execute(
            "UPDATE payouts SET status = $1, signature = $2, last_valid_block_height = $3,"
            " updated_at = $4 WHERE id = $5 AND status = $6",
            PayoutStatus.SENT.value, signature, last_valid_block_height, time.time(), payout_id,
            PayoutStatus.PENDING.value))

    async def payout_deadline(self, payout_id: str, last_valid_block_height: int) -> None:
        await self._tx(lambda conn: conn.execute(
            "UPDATE payouts SET last_valid_block_height = $1 WHERE id = $2 AND status = $3"
            " AND last_valid_block_height IS NULL",
            last_valid_block_height, payout_id, PayoutStatus.SENT.value))

    async def finish_payout(self, payout_id: str, paid: bool) -> Payout | None:
        async def body(conn: asyncpg.Connection) -> Payout | None:
            row = await conn.fetchrow(
                "UPDATE payouts SET status = $1, updated_at = $2 WHERE id = $3"
                f" AND status IN ($4, $5) RETURNING {self._PAYOUT_COLUMNS}",
                (PayoutStatus.PAID if paid else PayoutStatus.FAILED).value, time.time(),
                payout_id, PayoutStatus.PENDING.value, PayoutStatus.SENT.value,
            )
            if row is None:
                return None
            payout = _payout(row)
            await conn.execute(
                "UPDATE worker_accounts SET paying = paying - $1, paid = paid + $2"
                " WHERE wallet = $3",
                payout.amount, payout.amount if paid else 0, payout.wallet,
            )
            if paid:
                await self._entry(conn, EntryKind.PAYOUT, payout.amount, wallet=payout.wallet,
                                  ref=payout.id)
            return payout

        return await self._tx(body)

    async def open_payouts(self) -> list[Payout]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE status IN ($1, $2)",
            PayoutStatus.PENDING.value, PayoutStatus.SENT.value))
        return [_payout(row) for row in rows]

    async def payouts(self, wallet: str, limit: int) -> list[Payout]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE wallet = $1"
            " ORDER BY created_at DESC LIMIT $2",
            wallet, limit))
        return [_payout(row) for row in rows]

    async def earnings_by_hour(self, wallet: str, since: float) -> list[tuple[int, int, int]]:
        rows = await self._read(lambda conn: conn.fetch(
            "SELECT floor(at)::bigint / 3600 * 3600 AS hour, SUM(amount), COUNT(*)"
            " FROM ledger WHERE kind = $1 AND wallet = $2 AND at >= $3"
            " GROUP BY hour ORDER BY hour",
            EntryKind.WORKER_EARNING.value, wallet, since))
        return [(int(hour), int(amount), int(jobs)) for hour, amount, jobs in rows]


def _payout(row: Any) -> Payout:
    payout_id, wallet, amount, status, *rest = row
    return Payout(payout_id, wallet, amount, PayoutStatus(status), *rest)
