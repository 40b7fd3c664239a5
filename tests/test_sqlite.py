"""The shared SQLite helper (`nexus_app/sqlite.py`): a migration runs whole, inside one
transaction with its version bump, and the local chain's file is versioned with it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from solders.keypair import Keypair

from nexus_app import sqlite
from nexus_app.chain.local import MIGRATIONS as CHAIN_MIGRATIONS
from nexus_app.chain.local import LocalChain

# a `;` inside a literal and inside a trigger's body: splitting the script on `;` breaks both
TRICKY = """
CREATE TABLE notes (body TEXT NOT NULL);
CREATE TABLE counts (n INTEGER NOT NULL);
INSERT INTO counts VALUES (0);
CREATE TRIGGER notes_count AFTER INSERT ON notes BEGIN
    UPDATE counts SET n = n + 1;
END;
INSERT INTO notes VALUES ('first; with a semicolon');
"""


def test_a_migration_runs_as_one_script(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "a.sqlite3")
    assert sqlite.migrate(db, [TRICKY]) == 1
    db.execute("INSERT INTO notes VALUES ('second')")
    assert [r[0] for r in db.execute("SELECT body FROM notes")] == [
        "first; with a semicolon", "second"]
    assert db.execute("SELECT n FROM counts").fetchone()[0] == 2
    assert sqlite.migrate(db, [TRICKY]) == 1  # nothing left to run: a no-op


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    """The statements before the failing one are rolled back with it, the version stays,
    and the migrations before it are kept."""
    db = sqlite.connect(tmp_path / "a.sqlite3")
    broken = "ALTER TABLE notes ADD COLUMN extra TEXT; INSERT INTO missing VALUES (1);"
    with pytest.raises(sqlite3.OperationalError, match="missing"):
        sqlite.migrate(db, [TRICKY, broken])
    assert sqlite.user_version(db) == 1 and not db.in_transaction
    columns = [row[1] for row in db.execute("PRAGMA table_info(notes)")]
    assert columns == ["body"]
    assert sqlite.migrate(db, [TRICKY, "ALTER TABLE notes ADD COLUMN extra TEXT"]) == 2


def test_a_step_another_connection_ran_meanwhile_is_not_run_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The version is read before the write lock is taken; under it the script checks that
    no one migrated in between, and a stale step is skipped, not repeated."""
    path = tmp_path / "a.sqlite3"
    first, second = sqlite.connect(path), sqlite.connect(path)
    steps = [TRICKY, "INSERT INTO notes VALUES ('step two')"]
    sqlite.migrate(first, steps)
    reads = iter([0])  # `second` reads version 0 first, as if before `first` ran
    real = sqlite.user_version
    monkeypatch.setattr(sqlite, "user_version", lambda db: next(reads, real(db)))
    assert sqlite.migrate(second, steps) == 2
    assert second.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 2


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "a.sqlite3")
    sqlite.migrate(db, [TRICKY, "SELECT 1"])
    with pytest.raises(sqlite.SchemaTooNew):
        sqlite.migrate(db, [TRICKY])


async def test_a_local_chain_made_before_versioning_opens_and_is_versioned(
        tmp_path: Path) -> None:
    """Chains written before the schema was versioned (user_version 0, tables made with the
    same statements) open with their state, and are at the current version after."""
    path = tmp_path / "local-chain.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(CHAIN_MIGRATIONS[0])
    old.execute("INSERT INTO meta (key, value) VALUES ('mint', 'kept')")
    old.commit()
    old.close()
    chain = LocalChain(path)
    assert chain.meta("mint") == "kept"
    owner = Keypair().pubkey()
    chain.airdrop(owner, 1_000_000_000)
    await chain.close()
    db = sqlite3.connect(path)
    assert sqlite.user_version(db) == len(CHAIN_MIGRATIONS)
    db.close()
    again = LocalChain(path)
    assert again.meta("mint") == "kept" and await again.sol_balance(owner) == 1_000_000_000
    await again.close()
