"""`ConversationStore` on SQLite: sealed conversation records, their quota and expiry."""

from __future__ import annotations

from typing import Any

from nexus_app.gateway.ledger.records import ConversationKind, ConversationRecord
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase

_COLUMNS = ("id, account, key_id, kind, label, salt, nonce, ciphertext, created_at,"
            " expires_at")


def _record(row: tuple[Any, ...]) -> ConversationRecord:
    values = list(row)
    values[3] = ConversationKind(values[3])
    return ConversationRecord(*values)


class SQLiteConversations(SQLiteBase):
    async def add_conversation(self, record: ConversationRecord, quota_bytes: int) -> bool:
        r = record
        with self._tx() as db:  # BEGIN IMMEDIATE: one writer, so the sum is the one it adds to
            used = await self.conversation_bytes(r.account, r.created_at)
            if used + len(r.ciphertext) > quota_bytes:
                return False
            db.execute(
                f"INSERT INTO conversations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.account, r.key_id, r.kind.value, r.label, r.salt, r.nonce,
                 r.ciphertext, r.created_at, r.expires_at),
            )
        return True

    async def conversation_bytes(self, account: str, now: float) -> int:
        return int(self.db.execute(
            "SELECT COALESCE(SUM(length(ciphertext)), 0) FROM conversations"
            " WHERE account = ? AND expires_at > ?", (account, now)).fetchone()[0])

    async def conversation(self, account: str, record_id: str,
                           now: float) -> ConversationRecord | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE id = ? AND account = ?"
            " AND expires_at > ?", (record_id, account, now),
        ).fetchone()
        return _record(row) if row else None

    async def conversation_turns(self, account: str, label: str,
                                 now: float) -> list[ConversationRecord]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM conversations WHERE account = ? AND label = ?"
            " AND kind = ? AND expires_at > ? ORDER BY created_at, id",
            (account, label, ConversationKind.TURN.value, now),
        ).fetchall()
        return [_record(row) for row in rows]

    async def delete_conversation(self, account: str, record_id: str) -> bool:
        with self._tx() as db:
            deleted = db.execute("DELETE FROM conversations WHERE id = ? AND account = ?",
                                 (record_id, account)).rowcount
        return deleted > 0

    async def delete_conversation_turns(self, account: str, label: str) -> int:
        with self._tx() as db:
            return db.execute(
                "DELETE FROM conversations WHERE account = ? AND label = ? AND kind = ?",
                (account, label, ConversationKind.TURN.value)).rowcount

    async def delete_key_conversations(self, key_id: str) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM conversations WHERE key_id = ?", (key_id,)).rowcount

    async def prune_conversations(self, now: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM conversations WHERE expires_at <= ?", (now,)).rowcount
