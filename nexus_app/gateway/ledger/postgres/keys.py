"""`KeyStore` on PostgreSQL: API keys and sign-in sessions."""

from __future__ import annotations

import time

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import ApiKeyRecord


class PostgresKeys(PostgresBase):
    async def add_key(self, key: ApiKeyRecord) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            await self._ensure_account(conn, key.account)
            await conn.execute(
                "INSERT INTO api_keys (id, account, name, prefix, secret_hash, created_at,"
                " rpm, tpm) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                key.id, key.account, key.name, key.prefix, key.secret_hash, key.created_at,
                key.rpm, key.tpm,
            )

        await self._tx(body)

    _KEY_COLUMNS = (
        "id, account, name, prefix, secret_hash, created_at, last_used_at, revoked_at, rpm, tpm"
    )

    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        row = await self._read(lambda conn: conn.fetchrow(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1", secret_hash))
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self, account: str) -> list[ApiKeyRecord]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE account = $1 ORDER BY created_at",
            account))
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None:
        async def body(conn: asyncpg.Connection) -> ApiKeyRecord | None:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account = $3"
                " AND revoked_at IS NULL", now, key_id, account)
            row = await conn.fetchrow(
                f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = $1 AND account = $2",
                key_id, account)
            return ApiKeyRecord(*row) if row else None

        return await self._tx(body)

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if last_used:
            # in id order: two replicas touching the same keys lock them in the same order
            await self._tx(lambda conn: conn.executemany(
                "UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2",
                [(at, key_id) for key_id, at in sorted(last_used.items())]))

    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            await self._ensure_account(conn, account)
            await conn.execute("DELETE FROM sessions WHERE expires_at < $1", time.time())
            await conn.execute(
                "INSERT INTO sessions (token_hash, account, expires_at) VALUES ($1, $2, $3)",
                token_hash, account, expires_at)

        await self._tx(body)

    async def session_account(self, token_hash: str, now: float) -> str | None:
        return await self._read(lambda conn: conn.fetchval(  # type: ignore[no-any-return]
            "SELECT account FROM sessions WHERE token_hash = $1 AND expires_at > $2",
            token_hash, now))
