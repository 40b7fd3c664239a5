"""The connection pool every PostgreSQL slice of the store shares, and the helpers of their
transactions.

Each method of a slice is one short READ COMMITTED transaction whose guards are in its SQL, as
on SQLite. Where a transaction writes more than one kind of row it locks them in one fixed
order (accounts, then the promotional pool, then worker accounts), so that gateway replicas
writing the same rows queue rather than deadlock; a serialization failure or a deadlock the
server breaks anyway is retried from the start. A connection that cannot be had or is lost is
`LedgerUnavailable`, which the HTTP layer answers with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from nexus_app.gateway.ledger.postgres.schema import migrate
from nexus_app.gateway.ledger.records import EntryKind
from nexus_app.gateway.ledger.store import DEFAULT_REPLICA, LedgerUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
# (kind, amount, account, wallet, ref) of one ledger entry
Entry = tuple[EntryKind, int, str | None, str | None, str | None]
Tx = Callable[[asyncpg.Connection], Awaitable[T]]

ATTEMPTS = 5  # of one transaction that keeps meeting serialization failures or deadlocks
CONNECT_TIMEOUT_S = 5.0
# what a lost or unreachable server looks like to asyncpg and to the socket under it
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    # a connection cut in the middle of a statement leaves asyncpg's protocol in this state
    asyncpg.InternalClientError,
)
RETRIED = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


class PostgresBase:
    """One PostgreSQL database: its pool, lifecycle and transactions."""

    def __init__(self, url: str, *, pool_min: int = 2, pool_max: int = 10,
                 replica: str = DEFAULT_REPLICA, sync_commit: bool = False) -> None:
        self.url = url
        self.replica = replica
        self.sync_commit = sync_commit
        self._sizes = (pool_min, pool_max)
        self._pool: asyncpg.Pool | None = None
        # closings of reservations (settle, release) the database was unreachable for, in
        # order; each is idempotent, so retrying one whose commit did land changes nothing
        self._unclosed: list[Callable[[], Awaitable[bool]]] = []

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=self._sizes[0], max_size=self._sizes[1],
                timeout=CONNECT_TIMEOUT_S, command_timeout=30,
                server_settings={"default_transaction_isolation": "read committed",
                                 "synchronous_commit": "on" if self.sync_commit else "off"},
            )
            async with self._pool.acquire() as conn:
                await migrate(conn)
        except UNAVAILABLE as exc:
            await self.close()
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {type(exc).__name__}") from exc

    async def maintain(self) -> None:
        """Retry the reservation closings the database missed while it was unreachable, in
        their order (PostgreSQL checkpoints and vacuums on its own)."""
        while self._unclosed:
            try:
                await self._unclosed[0]()
            except LedgerUnavailable:
                return
            except Exception as exc:  # cannot apply (not expected): dropped, not retried forever
                log.error("a deferred reservation closing failed: %s", type(exc).__name__)
            self._unclosed.pop(0)
            if not self._unclosed:
                log.warning("PostgreSQL is back: the reservations left open are closed")

    async def _close(self, closing: Tx[bool], *, statement: bool = False) -> bool:
        """Run a transaction that closes a reservation; when the database is unreachable it
        is kept to be retried by `maintain`, and the caller still gets the error."""
        try:
            return await self._tx(closing, statement=statement)
        except LedgerUnavailable:
            self._close_later(closing, statement=statement)
            raise

    def _close_later(self, closing: Tx[bool], *, statement: bool = False) -> None:
        if not self._unclosed:
            log.error("PostgreSQL is unreachable: reservations are closed once it is back")
        self._unclosed.append(lambda: self._tx(closing, statement=statement))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5)
            except UNAVAILABLE:
                pool.terminate()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.fetchval("SELECT 1"))

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _tx(self, body: Tx[T], *, statement: bool = False) -> T:
        """Run `body` in one transaction; again from the start on a serialization failure or
        a deadlock (its writes were rolled back), or when the pooled connection turns out
        dead at BEGIN (the server restarted: nothing ran). A `statement` body is one SQL
        statement, a transaction of its own: it runs without the BEGIN and COMMIT round
        trips (the hot path's reserve and settle).

        Unless `sync_commit`, those statements commit without waiting for the WAL flush, as
        the SQLite ledger's commits do: a crash of the database server (not of a gateway)
        may lose the last fraction of a second of them, leaving jobs unbilled and never
        billed twice; every other transaction waits for its flush, which also makes every
        earlier commit durable (grants, deposits, payouts and keys are never lost)."""
        for attempt in range(ATTEMPTS):
            try:
                async with self._connection() as conn:
                    if statement:
                        return await body(conn)
                    tx = conn.transaction()
                    try:
                        await tx.start()
                    except UNAVAILABLE as exc:
                        raise _Stale from exc
                    if not self.sync_commit:
                        await conn.execute("SET LOCAL synchronous_commit TO on")
                    try:
                        result = await body(conn)
                    except BaseException:
                        await tx.rollback()
                        raise
                    await tx.commit()
                    return result
            except _Stale as exc:
                if attempt == ATTEMPTS - 1:
                    raise LedgerUnavailable("PostgreSQL connections keep failing") from exc
            except RETRIED:
                if attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01) * 2**attempt)
        raise AssertionError("unreachable")

    async def _read(self, body: Tx[T]) -> T:
        """Run a read (one statement, or several under one snapshot when it needs one); once
        more on a fresh connection when the first was dead (a read is safe to repeat)."""
        for attempt in range(2):
            try:
                async with self._connection() as conn:
                    return await body(conn)
            except LedgerUnavailable:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _connection(self) -> _Connection:
        return _Connection(self.pool)

    @staticmethod
    async def _entry(conn: asyncpg.Connection, kind: EntryKind, amount: int, *,
                     account: str | None = None, wallet: str | None = None,
                     ref: str | None = None) -> None:
        await PostgresBase._entries(conn, [(kind, amount, account, wallet, ref)])

    @staticmethod
    async def _entries(conn: asyncpg.Connection, entries: list[Entry]) -> None:
        """Append ledger entries; zero amounts are skipped."""
        now = time.time()
        rows = [(now, kind.value, account, wallet, amount, ref)
                for kind, amount, account, wallet, ref in entries if amount > 0]
        if rows:
            await conn.executemany(
                "INSERT INTO ledger (at, kind, account, wallet, amount, ref)"
                " VALUES ($1, $2, $3, $4, $5, $6)", rows)

    @staticmethod
    async def _ensure_account(conn: asyncpg.Connection, account: str) -> None:
        await conn.execute(
            "INSERT INTO accounts (account, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            account, time.time(),
        )


class _Stale(Exception):
    """A pooled connection was found dead before the transaction did anything."""


class _Connection:
    """A pooled connection; losing the server while getting or using it is
    `LedgerUnavailable` (the one place asyncpg's connection errors are translated)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            self._conn = await self._pool.acquire(timeout=CONNECT_TIMEOUT_S)
        except UNAVAILABLE as exc:
            raise LedgerUnavailable(f"PostgreSQL is unreachable: {type(exc).__name__}") from exc
        return self._conn  # type: ignore[no-any-return]

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: Any) -> None:
        try:
            await self._pool.release(self._conn)
        except UNAVAILABLE:
            # the release failed on a dead connection; the pool may already hold it back
            with contextlib.suppress(asyncpg.InterfaceError):
                self._conn.terminate()
        if exc is not None and isinstance(exc, UNAVAILABLE):
            raise LedgerUnavailable(f"PostgreSQL connection lost: {type(exc).__name__}") from exc
