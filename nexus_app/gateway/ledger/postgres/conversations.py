"""`ConversationStore` on PostgreSQL: sealed conversation records, their quota and expiry."""

from __future__ import annotations

from typing import Any

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.records import ConversationKind, ConversationRecord

_COLUMNS = ("id, account, key_id, kind, label, salt, nonce, ciphertext, created_at,"
            " expires_at")


def _record(row: Any) -> ConversationRecord:
    values = list(row)
    values[3] = ConversationKind(values[3])
    return ConversationRecord(*values)


def _count(status: str) -> int:
    """The row count of a command's status ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresConversations(PostgresBase):
    async def add_conversation(self, record: ConversationRecord, quota_bytes: int) -> bool:
        r = record

        async def body(conn: asyncpg.Connection) -> bool:
            # the account's row lock queues replicas adding to one account, so each sums
            # what the others added before it
            await self._ensure_account(conn, r.account)
            await conn.execute("SELECT 1 FROM accounts WHERE account = $1 FOR UPDATE",
                               r.account)
            used = await conn.fetchval(
                "SELECT COALESCE(SUM(octet_length(ciphertext)), 0) FROM conversations"
                " WHERE account = $1 AND expires_at > $2", r.account, r.created_at)
            if used + len(r.ciphertext) > quota_bytes:
                return False
            await conn.execute(
                f"INSERT INTO conversations ({_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                r.id, r.account, r.key_id, r.kind.value, r.label, r.salt, r.nonce,
                r.ciphertext, r.created_at, r.expires_at)
            return True

        return await self._tx(body)

    async def conversation_bytes(self, account: str, now: float) -> int:
        return int(await self._read(lambda conn: conn.fetchval(
            "SELECT COALESCE(SUM(octet_length(ciphertext)), 0) FROM conversations"
            " WHERE account = $1 AND expires_at > $2", account, now)))

    async def conversation(self, account: str, record_id: str,
                           now: float) -> ConversationRecord | None:
        row = await self._read(lambda conn: conn.fetchrow(
            f"SELECT {_COLUMNS} FROM conversations WHERE id = $1 AND account = $2"
            " AND expires_at > $3", record_id, account, now))
        return _record(row) if row else None

    async def conversation_turns(self, account: str, label: str,
                                 now: float) -> list[ConversationRecord]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {_COLUMNS} FROM conversations WHERE account = $1 AND label = $2"
            " AND kind = $3 AND expires_at > $4 ORDER BY created_at, id",
            account, label, ConversationKind.TURN.value, now))
        return [_record(row) for row in rows]

    async def delete_conversation(self, account: str, record_id: str) -> bool:
        status = await self._tx(lambda conn: conn.execute(
            "DELETE FROM conversations WHERE id = $1 AND account = $2", record_id, account))
        return _count(status) > 0

    async def delete_conversation_turns(self, account: str, label: str) -> int:
        return _count(await self._tx(lambda conn: conn.execute(
            "DELETE FROM conversations WHERE account = $1 AND label = $2 AND kind = $3",
            account, label, ConversationKind.TURN.value)))

    async def delete_key_conversations(self, key_id: str) -> int:
        return _count(await self._tx(lambda conn: conn.execute(
            "DELETE FROM conversations WHERE key_id = $1", key_id)))

    async def prune_conversations(self, now: float) -> int:
        return _count(await self._tx(lambda conn: conn.execute(
            "DELETE FROM conversations WHERE expires_at <= $1", now)))
