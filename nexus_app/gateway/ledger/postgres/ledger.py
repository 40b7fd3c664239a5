"""`LedgerStore` on PostgreSQL: grants, reservations and how they close, balances."""

from __future__ import annotations

import time

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import AccountBalance, EntryKind, Settlement
from nexus_app.gateway.ledger.store import LedgerUnavailable


class PostgresLedger(PostgresBase):
    async def grant(self, account: str, amount: int, memo: str) -> None:
        if amount <= 0:
            raise ValueError("a grant is a positive amount")

        async def body(conn: asyncpg.Connection) -> None:
            await self._ensure_account(conn, account)
            await conn.execute(
                "UPDATE accounts SET balance = balance + $1, updated_at = $2 WHERE account = $3",
                amount, time.time(), account,
            )
            await self._entry(conn, EntryKind.GRANT, amount, account=account, ref=memo)

        await self._tx(body)

    # one statement, so one round trip: the free part is read under the row's lock, the guards
    # of the UPDATE see the row as it is then, and nothing else is written unless it moved
    _RESERVE = (
        "WITH p AS (SELECT $1::text AS id, $2::text AS account, $3::bigint AS amount,"
        "  $4::float8 AS at, $5::text AS replica),"
        " cur AS (SELECT a.account, LEAST(a.free_balance, p.amount) AS free FROM accounts a, p"
        "  WHERE a.account = p.account FOR UPDATE OF a),"
        " moved AS (UPDATE accounts a SET free_balance = a.free_balance - cur.free,"
        "  balance = a.balance - (p.amount - cur.free), reserved = a.reserved + p.amount,"
        "  updated_at = p.at FROM cur, p WHERE a.account = cur.account"
        "  AND a.free_balance >= cur.free AND a.balance >= p.amount - cur.free"
        "  RETURNING cur.free),"
        " kept AS (INSERT INTO reservations (id, account, amount, free_amount, created_at,"
        "  replica) SELECT p.id, p.account, p.amount, moved.free, p.at, p.replica FROM moved, p),"
        " entry AS (INSERT INTO ledger (at, kind, account, amount, ref)"
        "  SELECT p.at, 'reserve', p.account, p.amount, p.id FROM moved, p WHERE p.amount > 0)"
        " SELECT COUNT(*) FROM moved"
    )

    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool:
        try:
            return bool(await self._tx(lambda conn: conn.fetchval(
                self._RESERVE, reservation_id, account, amount, time.time(), self.replica),
                statement=True))
        except LedgerUnavailable:
            # its commit may have landed unseen, and the caller will not use it: refund it
            self._close_later(lambda conn: self._release(conn, reservation_id))
            raise

    # one statement: the reservation taken (only if it covers the cost), the account's credit
    # returned and charged, the worker's earning, and the ledger's entries for all of it
    _SETTLE = (
        "WITH p AS (SELECT $1::text AS id, $2::bigint AS cost, $3::text AS wallet,"
        "  $4::bigint AS worker, $5::bigint AS treasury, $6::float8 AS at),"
        " r AS (DELETE FROM reservations USING p WHERE reservations.id = p.id"
        "  AND reservations.amount >= p.cost RETURNING reservations.account,"
        "  reservations.amount, reservations.free_amount - LEAST(free_amount, p.cost) AS free_back,"
        "  LEAST(free_amount, p.cost) AS free_spent),"
        " acct AS (UPDATE accounts a SET reserved = a.reserved - r.amount,"
        "  balance = a.balance + r.amount - p.cost - r.free_back,"
        "  free_balance = a.free_balance + r.free_back, total_spent = a.total_spent + p.cost,"
        "  updated_at = p.at FROM r, p WHERE a.account = r.account),"
        " earning AS (INSERT INTO worker_accounts (wallet, earned, first_earned_at)"
        "  SELECT p.wallet, p.worker, p.at FROM r, p WHERE p.worker > 0 ON CONFLICT (wallet)"
        "  DO UPDATE SET earned = worker_accounts.earned + excluded.earned),"
        " entries AS (INSERT INTO ledger (at, kind, account, wallet, amount, ref)"
        "  SELECT p.at, e.kind, e.account, e.wallet, e.amount, p.id FROM r, p, LATERAL (VALUES"
        "   ('settle', r.account, NULL, p.cost), ('free_spent', r.account, NULL, r.free_spent),"
        "   ('refund', r.account, NULL, r.amount - p.cost),"
        "   ('worker_earning', NULL, p.wallet, p.worker), ('treasury_fee', NULL, NULL, p.treasury)"
        "  ) AS e (kind, account, wallet, amount) WHERE e.amount > 0)"
        " SELECT COUNT(*) FROM r"
    )

    async def settle(self, reservation_id: str, settlement: Settlement) -> bool:
        s = settlement
        if s.worker_amount + s.treasury_amount != s.cost or min(s.cost, s.worker_amount) < 0:
            raise ValueError("settlement parts must add up to the cost")

        async def body(conn: asyncpg.Connection) -> bool:
            if s.worker_amount and not s.worker_wallet:
                return await self._still_open(conn, reservation_id, "a worker earning needs "
                                              "a wallet")
            if await conn.fetchval(self._SETTLE, reservation_id, s.cost, s.worker_wallet,
                                   s.worker_amount, s.treasury_amount, time.time()):
                return True
            return await self._still_open(conn, reservation_id,
                                          "cannot settle more than was reserved")

        return await self._close(body, statement=True)

    @staticmethod
    async def _still_open(conn: asyncpg.Connection, reservation_id: str, error: str) -> bool:
        """False when the reservation is not open (settled or refunded already); the refusal
        `error` when it is, and the settlement was not applied."""
        if await conn.fetchval("SELECT 1 FROM reservations WHERE id = $1", reservation_id):
            raise ValueError(error)
        return False

    async def release(self, reservation_id: str) -> bool:
        return await self._close(lambda conn: self._release(conn, reservation_id))

    async def release_all_open(self) -> int:
        return await self.release_replica(self.replica)

    async def release_replica(self, replica: str) -> int:
        """Each reservation in its own short transaction: a replica refunding a gone one's
        never holds many account rows at once."""
        ids = await self._read(lambda conn: conn.fetch(
            "SELECT id FROM reservations WHERE replica = $1 ORDER BY id", replica))
        released = 0
        for (reservation_id,) in ids:
            released += await self.release(reservation_id)
        return released

    async def _release(self, conn: asyncpg.Connection, reservation_id: str) -> bool:
        row = await self._take_reservation(conn, reservation_id)
        if row is None:
            return False
        account, amount, free = row
        await self._return(conn, account, amount, amount - free, free)
        await self._entry(conn, EntryKind.REFUND, amount, account=account, ref=reservation_id)
        return True

    @staticmethod
    async def _take_reservation(conn: asyncpg.Connection,
                                reservation_id: str) -> tuple[str, int, int] | None:
        """Close an open reservation: its (account, amount, free part), or None when it is
        not open (so settling or releasing it twice, from any replica, changes nothing)."""
        row = await conn.fetchrow(
            "DELETE FROM reservations WHERE id = $1 RETURNING account, amount, free_amount",
            reservation_id,
        )
        return None if row is None else (row[0], row[1], row[2])

    @staticmethod
    async def _return(conn: asyncpg.Connection, account: str, reserved: int, paid: int,
                      free: int, spent: int = 0) -> None:
        """Close `reserved` on the account: `spent` is charged, `paid` and `free` credit
        go back."""
        await conn.execute(
            "UPDATE accounts SET reserved = reserved - $1, balance = balance + $2,"
            " free_balance = free_balance + $3, total_spent = total_spent + $4,"
            " updated_at = $5 WHERE account = $6",
            reserved, paid, free, spent, time.time(), account,
        )

    async def balance(self, account: str) -> AccountBalance:
        row = await self._read(lambda conn: conn.fetchrow(
            "SELECT balance, reserved, total_spent, updated_at, free_balance FROM accounts"
            " WHERE account = $1", account))
        if row is None:
            return AccountBalance(account, 0, 0, 0, 0.0)
        return AccountBalance(account, *row)
