"""Conversations of the chat screen, kept on this machine only: SQLite in the data dir, its
schema versioned with `PRAGMA user_version` and migrated forward on open (`nexus_app.sqlite`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nexus_app import sqlite

MIGRATIONS = [
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY, title TEXT NOT NULL, model TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
        content TEXT NOT NULL, created_at REAL NOT NULL
    );
    CREATE INDEX messages_conversation ON messages (conversation_id, id);
    """,
    """
    ALTER TABLE messages ADD COLUMN cost INTEGER;
    ALTER TABLE messages ADD COLUMN completion_tokens INTEGER;
    ALTER TABLE messages ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    """,
]


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str | None
    updated_at: float


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation, as stored."""

    role: str
    content: str
    cost: int | None = None  # token base units, when the server reported it
    completion_tokens: int | None = None
    cancelled: bool = False


class ConversationStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite.connect(path)
        sqlite.migrate(self.db, MIGRATIONS)

    @property
    def schema_version(self) -> int:
        return sqlite.user_version(self.db)

    def close(self) -> None:
        self.db.close()

    def create(self, title: str = "New chat", model: str | None = None) -> Conversation:
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO conversations (title, model, created_at, updated_at) VALUES (?,?,?,?)",
            (title, model, now, now),
        )
        return Conversation(int(cursor.lastrowid or 0), title, model, now)

    def recent(self) -> list[Conversation]:
        """Every conversation, the most recently used first."""
        rows = self.db.execute(
            "SELECT id, title, model, updated_at FROM conversations "
            "ORDER BY updated_at DESC, id DESC"
        )
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: int) -> Conversation | None:
        row = self.db.execute(
            "SELECT id, title, model, updated_at FROM conversations WHERE id = ?",
            (conversation_id,),
        ).fetchone()
        return Conversation(*row) if row else None

    def rename(self, conversation_id: int, title: str) -> None:
        self.db.execute("UPDATE conversations SET title = ? WHERE id = ?",
                        (title.strip() or "Untitled", conversation_id))

    def delete(self, conversation_id: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def messages(self, conversation_id: int) -> list[ChatTurn]:
        rows = self.db.execute(
            "SELECT role, content, cost, completion_tokens, cancelled FROM messages "
            "WHERE conversation_id = ? ORDER BY id", (conversation_id,),
        )
        return [ChatTurn(role, content, cost, tokens, bool(cancelled))
                for role, content, cost, tokens, cancelled in rows]

    def add(self, conversation_id: int, message: ChatTurn, model: str | None = None) -> None:
        """Append a message; the conversation becomes the most recent one."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, cost, completion_tokens,"
                " cancelled, created_at) VALUES (?,?,?,?,?,?,?)",
                (conversation_id, message.role, message.content, message.cost,
                 message.completion_tokens, int(message.cancelled), now),
            )
            self.db.execute(
                "UPDATE conversations SET updated_at = ?, model = coalesce(?, model) "
                "WHERE id = ?", (now, model, conversation_id),
            )
