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

    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool:
        async def body(conn: asyncpg.Connection) -> bool:
            # the row lock makes the free part read here the one the guarded UPDATE sees
            free_balance = await conn.fetchval(
                "SELECT free_balance FROM accounts WHERE account = $1 FOR UPDATE", account)
            free = min(free_balance, amount) if free_balance is not None else 0
            moved = await conn.execute(
                "UPDATE accounts SET free_balance = free_balance - $1, balance = balance - $2,"
                " reserved = reserved + $3, updated_at = $4"
                " WHERE account = $5 AND free_balance >= $1 AND balance >= $2",
                free, amount - free, amount, time.time(), account,
            )
            if moved == "UPDATE 0":
                return False
            await conn.execute(
                "INSERT INTO reservations (id, account, amount, free_amount, created_at, replica)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                reservation_id, account, amount, free, time.time(), self.replica,
            )
            await self._entry(conn, EntryKind.RESERVE, amount, account=account,
                              ref=reservation_id)
            return True

        try:
            return await self._tx(body)
        except LedgerUnavailable:
            # its commit may have landed unseen, and the caller will not use it: refund it
            self._close_later(lambda conn: self._release(conn, reservation_id))
            raise

    async def settle(self, reservation_id: str, settlement: Settlement) -> bool:
        s = settlement
        if s.worker_amount + s.treasury_amount != s.cost or min(s.cost, s.worker_amount) < 0:
            raise ValueError("settlement parts must add up to the cost")

        async def body(conn: asyncpg.Connection) -> bool:
            row = await self._take_reservation(conn, reservation_id)
            if row is None:
                return False
            account, reserved, free = row
            if s.cost > reserved:
                raise ValueError("cannot settle more than was reserved")
            free_back = free - min(free, s.cost)  # the cost is paid from free credit first
            await self._return(conn, account, reserved, reserved - s.cost - free_back,
                               free_back, spent=s.cost)
            if s.worker_amount:
                if not s.worker_wallet:
                    raise ValueError("a worker earning needs a wallet")
                await conn.execute(
                    "INSERT INTO worker_accounts (wallet, earned, first_earned_at)"
                    " VALUES ($1, $2, $3) ON CONFLICT (wallet)"
                    " DO UPDATE SET earned = worker_accounts.earned + excluded.earned",
                    s.worker_wallet, s.worker_amount, time.time(),
                )
            await self._entries(conn, [
                (EntryKind.SETTLE, s.cost, account, None, reservation_id),
                (EntryKind.FREE_SPENT, min(free, s.cost), account, None, reservation_id),
                (EntryKind.REFUND, reserved - s.cost, account, None, reservation_id),
                (EntryKind.WORKER_EARNING, s.worker_amount, None, s.worker_wallet,
                 reservation_id),
                (EntryKind.TREASURY_FEE, s.treasury_amount, None, None, reservation_id),
            ])
            return True

        return await self._close(body)

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
