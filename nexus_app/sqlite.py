"""SQLite as the app uses it (the ledger, the local chain, the terminal app's conversations):
one way to connect, and schemas versioned with `PRAGMA user_version`.

A migration is one script run whole by SQLite (never split on `;`, which may sit inside a
literal), inside one transaction with its version bump: it applies entirely or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


class SchemaTooNew(sqlite3.DatabaseError):
    """The file was written by a newer version of the app, with migrations this one lacks."""


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit `BEGIN`…`COMMIT`), in WAL
    mode with `synchronous=NORMAL`: a commit is a page append without fsync, and a crash of
    the process (even SIGKILL) never loses a committed transaction."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA foreign_keys=ON")
    return db


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Run the migrations the file has not had yet (`migrations[n]` takes it from version n
    to n + 1); returns the version it is at. Safe when several connections open the same
    file at once: each step first checks, under the write lock, that no one ran it."""
    db.create_function("nexus_expect_version", 2, _expect_version)
    while (version := user_version(db)) < len(migrations):
        # executescript commits any open transaction first, so the transaction, its guard
        # and the version bump are all inside the one script
        guard = f"SELECT nexus_expect_version(user_version, {version}) FROM pragma_user_version"
        script = (f"BEGIN IMMEDIATE;\n{guard};\n{migrations[version]}\n;\n"
                  f"PRAGMA user_version = {version + 1};\nCOMMIT;")
        try:
            db.executescript(script)
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if user_version(db) == version:
                raise
            # another connection ran this step meanwhile: carry on from where it is now
    if version > len(migrations):
        raise SchemaTooNew(f"schema version {version} is newer than this app's "
                           f"{len(migrations)}: upgrade the app")
    return version


def _expect_version(found: int, expected: int) -> int:
    if found != expected:
        raise ValueError("schema version changed while migrating")
    return found
