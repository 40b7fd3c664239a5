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
from urllib.parse import urlsplit

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


class CuttableProxy:
    """A TCP proxy in front of the PostgreSQL server that a test can cut (every connection
    dropped, new ones closed at once: the server "down") and restore, without touching the
    server the other tests share."""

    def __init__(self) -> None:
        upstream = urlsplit(SERVER)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 5432)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.down = False

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def url(self, database_url: str) -> str:
        """`database_url` reached through this proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        server = urlsplit(SERVER)
        user = f"{server.netloc.rsplit('@', 1)[0]}@" if "@" in server.netloc else ""
        return database_url.replace(SERVER, f"{server.scheme}://{user}127.0.0.1:{port}", 1)

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
