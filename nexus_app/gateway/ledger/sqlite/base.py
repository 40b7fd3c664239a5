"""The connection every SQLite slice of the store shares, and the helpers of their
transactions.

Each method of a slice is one short transaction on indexed rows. WAL mode makes a commit a page
append without fsync, so running these statements inline on the event loop costs a few
microseconds and avoids a thread hop per request; a crash (even SIGKILL) never loses a
committed transaction. The gateway's connection never checkpoints the WAL itself (that fsyncs,
which would stall the loop); `maintain()` does it from a worker thread on a second connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nexus_app import sqlite
from nexus_app.file_modes import private_file
from nexus_app.gateway.ledger.records import EntryKind
from nexus_app.gateway.ledger.sqlite.schema import MIGRATIONS
from nexus_app.gateway.ledger.store import DEFAULT_REPLICA

# (kind, amount, account, wallet, ref) of one ledger entry
Entry = tuple[EntryKind, int, str | None, str | None, str | None]


class SQLiteBase:
    """One SQLite file: its connection, lifecycle and transactions."""

    def __init__(self, path: Path, *, replica: str = DEFAULT_REPLICA) -> None:
        self.path = path
        self.replica = replica
        self._db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None

    async def open(self) -> None:
        private_file(self.path)  # the ledger is the operator's: 0600 in a 0700 data dir
        self._db = sqlite.connect(self.path, check_same_thread=False)
        sqlite.migrate(self._db, MIGRATIONS)
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)

    async def maintain(self) -> None:
        """Copy the write-ahead log into the database file, off the event loop."""
        if self._checkpointer is not None:
            await asyncio.to_thread(
                self._checkpointer.execute, "PRAGMA wal_checkpoint(PASSIVE)"
            )

    async def close(self) -> None:
        for db in (self._checkpointer, self._db):
            if db is not None:
                db.close()
        self._db = self._checkpointer = None

    async def ping(self) -> None:
        self.db.execute("SELECT 1").fetchone()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _entry(db: sqlite3.Connection, kind: EntryKind, amount: int, *,
               account: str | None = None, wallet: str | None = None,
               ref: str | None = None) -> None:
        SQLiteBase._entries(db, [(kind, amount, account, wallet, ref)])

    @staticmethod
    def _entries(db: sqlite3.Connection, entries: list[Entry]) -> None:
        """Append ledger entries; zero amounts are skipped."""
        now = time.time()
        db.executemany(
            "INSERT INTO ledger (at, kind, account, wallet, amount, ref) VALUES (?, ?, ?, ?, ?, ?)",
            [(now, kind.value, account, wallet, amount, ref)
             for kind, amount, account, wallet, ref in entries if amount > 0],
        )

    @staticmethod
    def _ensure_account(db: sqlite3.Connection, account: str) -> None:
        db.execute(
            "INSERT INTO accounts (account, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (account, time.time()),
        )
