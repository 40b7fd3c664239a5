"""`KeyStore` on SQLite: API keys and sign-in sessions."""

from __future__ import annotations

import time

from nexus_app.gateway.ledger.records import ApiKeyRecord
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteKeys(SQLiteBase):
    async def add_key(self, key: ApiKeyRecord) -> None:
        with self._tx() as db:
            self._ensure_account(db, key.account)
            db.execute(
                "INSERT INTO api_keys (id, account, name, prefix, secret_hash, created_at,"
                " rpm, tpm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.account, key.name, key.prefix, key.secret_hash, key.created_at,
                 key.rpm, key.tpm),
            )

    _KEY_COLUMNS = (
        "id, account, name, prefix, secret_hash, created_at, last_used_at, revoked_at, rpm, tpm"
    )

    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        row = self.db.execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self, account: str) -> list[ApiKeyRecord]:
        rows = self.db.execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE account = ? ORDER BY created_at",
            (account,),
        ).fetchall()
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None:
        with self._tx() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND account = ?"
                " AND revoked_at IS NULL",
                (now, key_id, account),
            )
            row = db.execute(
                f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ? AND account = ?",
                (key_id, account),
            ).fetchone()
        return ApiKeyRecord(*row) if row else None

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if last_used:
            with self._tx() as db:
                db.executemany(
                    "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                    [(at, key_id) for key_id, at in last_used.items()],
                )

    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None:
        with self._tx() as db:
            self._ensure_account(db, account)
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
            db.execute(
                "INSERT INTO sessions (token_hash, account, expires_at) VALUES (?, ?, ?)",
                (token_hash, account, expires_at),
            )

    async def session_account(self, token_hash: str, now: float) -> str | None:
        row = self.db.execute(
            "SELECT account FROM sessions WHERE token_hash = ? AND expires_at > ?",
            (token_hash, now),
        ).fetchone()
        return row[0] if row else None
