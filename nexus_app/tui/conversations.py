"""Conversations of the chat screen, kept on this machine only: SQLite in the data dir, its
schema versioned with `PRAGMA user_version` and migrated forward on open (`nexus_app.sqlite`).
Each conversation keeps its own chat settings; messages are searchable through an FTS5 index
that triggers keep in step with them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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
    # each conversation's chat settings (NULL: the server's default)
    """
    ALTER TABLE conversations ADD COLUMN system_prompt TEXT;
    ALTER TABLE conversations ADD COLUMN temperature REAL;
    ALTER TABLE conversations ADD COLUMN top_p REAL;
    ALTER TABLE conversations ADD COLUMN max_tokens INTEGER;
    """,
    # full-text search over the messages: an external-content FTS5 index of messages.content
    # (no second copy of the text), filled with the messages already there
    """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content='messages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content)
            VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    """,
]
_CONVERSATION = ("id, title, model, updated_at, system_prompt, temperature, top_p, max_tokens")


@dataclass(frozen=True)
class ChatSettings:
    """A conversation's settings; None leaves each to the server."""

    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str | None
    updated_at: float
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None

    @property
    def settings(self) -> ChatSettings:
        return ChatSettings(self.system_prompt, self.temperature, self.top_p, self.max_tokens)


@dataclass(frozen=True)
class SearchHit:
    """A message that matches a search: where it is, and its words around the match."""

    conversation_id: int
    title: str
    role: str
    snippet: str


@dataclass(frozen=True)
class ChatTurn:
    """One message of a conversation, as stored."""

    role: str
    content: str
    cost: int | None = None  # token base units, when the server reported it
    completion_tokens: int | None = None
    cancelled: bool = False
    id: int | None = field(default=None, compare=False)  # set once stored


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
            f"SELECT {_CONVERSATION} FROM conversations ORDER BY updated_at DESC, id DESC"
        )
        return [Conversation(*row) for row in rows]

    def get(self, conversation_id: int) -> Conversation | None:
        row = self.db.execute(
            f"SELECT {_CONVERSATION} FROM conversations WHERE id = ?", (conversation_id,),
        ).fetchone()
        return Conversation(*row) if row else None

    def rename(self, conversation_id: int, title: str) -> None:
        self.db.execute("UPDATE conversations SET title = ? WHERE id = ?",
                        (title.strip() or "Untitled", conversation_id))

    def delete(self, conversation_id: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def messages(self, conversation_id: int) -> list[ChatTurn]:
        rows = self.db.execute(
            "SELECT role, content, cost, completion_tokens, cancelled, id FROM messages "
            "WHERE conversation_id = ? ORDER BY id", (conversation_id,),
        )
        return [ChatTurn(role, content, cost, tokens, bool(cancelled), message_id)
                for role, content, cost, tokens, cancelled, message_id in rows]

    def add(self, conversation_id: int, message: ChatTurn, model: str | None = None) -> int:
        """Append a message; the conversation becomes the most recent one. Returns its id."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN")
            cursor = self.db.execute(
                "INSERT INTO messages (conversation_id, role, content, cost, completion_tokens,"
                " cancelled, created_at) VALUES (?,?,?,?,?,?,?)",
                (conversation_id, message.role, message.content, message.cost,
                 message.completion_tokens, int(message.cancelled), now),
            )
            self.db.execute(
                "UPDATE conversations SET updated_at = ?, model = coalesce(?, model) "
                "WHERE id = ?", (now, model, conversation_id),
            )
        return int(cursor.lastrowid or 0)

    def truncate(self, conversation_id: int, from_message: int) -> None:
        """Delete the message `from_message` and every later one of the conversation (to
        regenerate a reply, or resend an edited message)."""
        self.db.execute("DELETE FROM messages WHERE conversation_id = ? AND id >= ?",
                        (conversation_id, from_message))

    def set_settings(self, conversation_id: int, settings: ChatSettings,
                     model: str | None = None) -> None:
        self.db.execute(
            "UPDATE conversations SET system_prompt = ?, temperature = ?, top_p = ?,"
            " max_tokens = ?, model = coalesce(?, model) WHERE id = ?",
            (settings.system_prompt or None, settings.temperature, settings.top_p,
             settings.max_tokens, model, conversation_id),
        )

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages with every word of `text` (as word prefixes), the best matches first."""
        words = [word.replace('"', '""') for word in text.split()]
        if not words:
            return []
        query = " ".join(f'"{word}"*' for word in words)
        rows = self.db.execute(
            "SELECT m.conversation_id, c.title, m.role,"
            " snippet(messages_fts, 0, '[', ']', '…', 10)"
            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?", (query, limit),
        )
        return [SearchHit(*row) for row in rows]

    def markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document: its title, settings and messages."""
        conversation = self.get(conversation_id)
        if conversation is None:
            return ""
        lines = [f"# {conversation.title}", ""]
        settings = conversation.settings
        facts = [("Model", conversation.model), ("Temperature", settings.temperature),
                 ("Top p", settings.top_p), ("Max tokens", settings.max_tokens)]
        lines += [f"- {name}: {value}" for name, value in facts if value is not None]
        if settings.system_prompt:
            lines += ["", "## System", "", settings.system_prompt]
        for message in self.messages(conversation_id):
            lines += ["", f"## {'You' if message.role == 'user' else message.role.title()}",
                      "", message.content]
        return "\n".join(lines).strip() + "\n"
