"""The conversations a caller keeps on the gateway, sealed under its API key: the turns of a
`userid`'s history (`/v1/text/generate`) and stored Responses. Framework-free: the routes
call it with the request's `ConversationKey`; the store sees only ciphertext, owners, opaque
labels and expiry times."""

from __future__ import annotations

import time
from typing import Any

import orjson

from nexus_app.gateway.conversations.crypto import ConversationKey, Sealed, Unreadable
from nexus_app.gateway.errors import Forbidden, NotFound
from nexus_app.gateway.ledger.records import ConversationKind, ConversationRecord
from nexus_app.gateway.ledger.store import ConversationStore
from nexus_app.ids import new_id


def _associated(record: ConversationRecord) -> bytes:
    """What a record's ciphertext is bound to: its kind, account and id."""
    return f"{record.kind.value}\x00{record.account}\x00{record.id}".encode()


class Conversations:
    """Seals, stores, opens and deletes one account's conversation records."""

    def __init__(self, store: ConversationStore, *, ttl_s: float, quota_bytes: int,
                 history_messages: int) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.quota_bytes = quota_bytes
        self.history_messages = history_messages

    async def _add(self, key: ConversationKey, owner: tuple[str, str], kind: ConversationKind,
                   record_id: str, label: str | None, payload: Any) -> None:
        account, key_id = owner
        now = time.time()
        bare = ConversationRecord(record_id, account, key_id, kind, label, b"", b"", b"", now,
                                  now + self.ttl_s)
        sealed = key.seal(orjson.dumps(payload), _associated(bare))
        record = ConversationRecord(record_id, account, key_id, kind, label, sealed.salt,
                                    sealed.nonce, sealed.ciphertext, now, now + self.ttl_s)
        if not await self.store.add_conversation(record, self.quota_bytes):
            raise self._full()

    def _full(self) -> Forbidden:
        return Forbidden(
            f"This account's stored conversations are full ({self.quota_bytes} bytes): "
            "delete some (DELETE /v1/text/history/{userid}, DELETE /v1/responses/{id}) "
            "or wait for them to expire.", code="conversation_quota_exceeded")

    async def check_room(self, account: str, size: int) -> None:
        """A 403 before a request runs whose turn (about `size` bytes) the account has no
        room left to store, rather than after it was run and billed."""
        if await self.store.conversation_bytes(account, time.time()) + size > self.quota_bytes:
            raise self._full()

    @staticmethod
    def _open(key: ConversationKey, record: ConversationRecord) -> Any:
        sealed = Sealed(record.salt, record.nonce, record.ciphertext)
        return orjson.loads(key.open(sealed, _associated(record)))

    # userid history (/v1/text/generate) -------------------------------------------------------

    async def history(self, key: ConversationKey, account: str,
                      userid: str) -> list[dict[str, Any]]:
        """Every message of `userid`'s unexpired history, oldest first."""
        label = key.label(account, userid)
        messages: list[dict[str, Any]] = []
        for record in await self.store.conversation_turns(account, label, time.time()):
            messages += self._open(key, record)
        return messages

    async def add_turn(self, key: ConversationKey, owner: tuple[str, str], userid: str,
                       messages: list[dict[str, Any]]) -> None:
        """Append one turn (the user's message and the reply) to `userid`'s history;
        `owner` is (account, key id)."""
        await self._add(key, owner, ConversationKind.TURN, new_id("turn"),
                        key.label(owner[0], userid), messages)

    async def forget(self, key: ConversationKey, account: str, userid: str) -> int:
        """Delete `userid`'s history; a 404 when this key has none under it."""
        deleted = await self.store.delete_conversation_turns(account, key.label(account, userid))
        if not deleted:
            raise NotFound(f"No history for userid '{userid}'.", param="userid",
                           code="history_not_found")
        return deleted

    # stored responses --------------------------------------------------------------------------

    async def save_response(self, key: ConversationKey, owner: tuple[str, str],
                            response_id: str, payload: dict[str, Any]) -> None:
        await self._add(key, owner, ConversationKind.RESPONSE, response_id, None, payload)

    async def response(self, key: ConversationKey, account: str,
                       response_id: str) -> dict[str, Any]:
        """A stored response of `account` that this key wrote; a 404 otherwise (another
        account's, another key's, expired or deleted)."""
        record = await self.store.conversation(account, response_id, time.time())
        if record is not None and record.kind is ConversationKind.RESPONSE:
            try:
                return self._open(key, record)  # type: ignore[no-any-return]
            except Unreadable:
                pass
        raise NotFound(f"No response found with id '{response_id}'.",
                       param="response_id", code="response_not_found")

    async def delete_response(self, key: ConversationKey, account: str,
                              response_id: str) -> None:
        await self.response(key, account, response_id)  # only the key that wrote it deletes it
        await self.store.delete_conversation(account, response_id)

    async def prune(self) -> int:
        return await self.store.prune_conversations(time.time())
