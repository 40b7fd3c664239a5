"""PostgreSQL for tests: a database of the test run's own (random name, dropped at the end of
the run) on the server at `NEXUS_TEST_POSTGRES` (default: 127.0.0.1:5432 as user postgres),
and in it a fresh schema per test, which the ledger URL selects (`search_path`).

Without a server the PostgreSQL cases are skipped, unless `NEXUS_REQUIRE_POSTGRES=1` (CI),
where that is a failure."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest

SERVER = os.environ.get("NEXUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REQUIRED = os.environ.get("NEXUS_REQUIRE_POSTGRES") == "1"


def _run(statement: str, database: str = "postgres") -> None:
    async def run() -> None:
        conn = await asyncpg.connect(f"{SERVER}/{database}", timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def run_database() -> Iterator[str | None]:
    """A new database for this run (its URL), dropped afterwards; None without a server."""
    name = "nexus_test_" + secrets.token_hex(6)
    try:
        _run(f"CREATE DATABASE {name}")
    except (OSError, asyncpg.PostgresError) as exc:
        if REQUIRED:
            raise
        print(f"PostgreSQL at {SERVER} is not answering ({exc}): its tests are skipped")
        yield None
        return
    try:
        yield f"{SERVER}/{name}"
    finally:
        _run(f"DROP DATABASE {name} WITH (FORCE)")


@contextmanager
def fresh_schema(database: str | None) -> Iterator[str]:
    """The URL of an empty schema of its own in `database`, dropped afterwards."""
    if database is None:
        pytest.skip("no PostgreSQL server to test on")
    schema = "t_" + secrets.token_hex(6)
    db_name = database.rsplit("/", 1)[1]
    _run(f"CREATE SCHEMA {schema}", db_name)
    try:
        yield f"{database}?search_path={schema}"
    finally:
        _run(f"DROP SCHEMA {schema} CASCADE", db_name)


async def query(store: object, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run `sql` (with `?` placeholders) on the store's own database, whichever backend: for
    tests that look into or tamper with it. Returns the rows."""
    from nexus_app.gateway.ledger.postgres.store import PostgresStore
    from nexus_app.gateway.ledger.sqlite.store import SQLiteStore

    if isinstance(store, PostgresStore):
        numbers = iter(range(1, 100))
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        async with store.pool.acquire() as conn:
            return [tuple(row) for row in await conn.fetch(numbered, *args)]
    assert isinstance(store, SQLiteStore)
    return store.db.execute(sql, args).fetchall()


async def execute(store: object, sql: str, *args: object) -> None:
    await query(store, sql, *args)
