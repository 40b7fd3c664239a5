"""The ledger's `ConversationStore` slice, on SQLite and on PostgreSQL (`both_ledgers`), with
the sealing of `gateway/conversations/crypto.py`: what is stored is ciphertext bound to its
key and record, an account's records stay within their quota, expire and go with their key."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from nexus_app.gateway.conversations.crypto import ConversationKey, Unreadable
from nexus_app.gateway.conversations.history import Conversations
from nexus_app.gateway.errors import Forbidden, NotFound
from nexus_app.gateway.ledger.postgres.copy import copy_sqlite_ledger
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from nexus_app.gateway.ledger.records import ConversationKind, ConversationRecord
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import Store

pytestmark = pytest.mark.both_ledgers
KEY = ConversationKey.of_api_key("nex_live_first-key")
OTHER = ConversationKey.of_api_key("nex_live_second-key")


def conversations(store: Store, quota: int = 100_000, ttl: float = 3600) -> Conversations:
    return Conversations(store, ttl_s=ttl, quota_bytes=quota, history_messages=40)


def test_a_sealed_record_opens_only_under_its_key_and_its_own_data() -> None:
    sealed = KEY.seal(b"secret words", b"turn\x00acct\x00id1")
    assert b"secret" not in sealed.ciphertext and len(sealed.salt) == 16
    assert KEY.open(sealed, b"turn\x00acct\x00id1") == b"secret words"
    with pytest.raises(Unreadable):
        OTHER.open(sealed, b"turn\x00acct\x00id1")  # the wrong key decrypts nothing
    with pytest.raises(Unreadable):
        KEY.open(sealed, b"turn\x00acct\x00id2")  # moved to another record
    assert repr(KEY) == "ConversationKey()"  # the material never shows in a log
    # a userid's label depends on the key and the account, and reveals neither
    assert KEY.label("a", "alice") != OTHER.label("a", "alice") != KEY.label("b", "alice")
    assert "alice" not in KEY.label("a", "alice")


async def test_turns_come_back_in_order_for_their_key_only(store: Store) -> None:
    convs = conversations(store)
    await convs.add_turn(KEY, ("acct", "key1"), "alice", [{"role": "user", "content": "one"}])
    await convs.add_turn(KEY, ("acct", "key1"), "alice", [{"role": "user", "content": "two"}])
    await convs.add_turn(KEY, ("acct", "key1"), "bob", [{"role": "user", "content": "other"}])
    assert [m["content"] for m in await convs.history(KEY, "acct", "alice")] == ["one", "two"]
    assert await convs.history(OTHER, "acct", "alice") == []  # another key's label
    assert await convs.history(KEY, "other-acct", "alice") == []  # another account
    with pytest.raises(NotFound):
        await convs.forget(KEY, "other-acct", "alice")
    assert await convs.forget(KEY, "acct", "alice") == 2
    assert await convs.history(KEY, "acct", "alice") == []
    assert len(await convs.history(KEY, "acct", "bob")) == 1


async def test_a_stored_response_is_a_404_to_other_keys_and_accounts(store: Store) -> None:
    convs = conversations(store)
    await convs.save_response(KEY, ("acct", "key1"), "resp_1", {"response": {"id": "resp_1"}})
    assert (await convs.response(KEY, "acct", "resp_1"))["response"]["id"] == "resp_1"
    for key, account in ((OTHER, "acct"), (KEY, "other-acct")):
        with pytest.raises(NotFound):
            await convs.response(key, account, "resp_1")
        with pytest.raises(NotFound):
            await convs.delete_response(key, account, "resp_1")
    await convs.delete_response(KEY, "acct", "resp_1")
    with pytest.raises(NotFound):
        await convs.response(KEY, "acct", "resp_1")


async def test_the_quota_holds_under_concurrent_writers(store: Store) -> None:
    record_bytes = len(KEY.seal(b'[{"role":"user","content":"x"}]', b"").ciphertext)
    convs = conversations(store, quota=record_bytes * 3)
    results = await asyncio.gather(*(
        convs.add_turn(KEY, ("acct", "key1"), f"u{i}", [{"role": "user", "content": "x"}])
        for i in range(8)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, Forbidden)]
    assert len(refused) == 5 and refused[0].code == "conversation_quota_exceeded"
    assert await store.conversation_bytes("acct", time.time()) == record_bytes * 3
    with pytest.raises(Forbidden):
        await convs.check_room("acct", 1)
    await convs.check_room("another", 1)


async def test_expired_records_are_unseen_then_pruned_and_a_key_takes_its_own(
        store: Store) -> None:
    now = time.time()
    old = ConversationRecord("old", "acct", "key1", ConversationKind.TURN, "l", b"s", b"n",
                             b"c", now - 100, now - 1)
    assert await store.add_conversation(old, 10_000)
    assert await store.conversation_turns("acct", "l", now) == []
    assert await store.conversation_bytes("acct", now) == 0
    convs = conversations(store)
    await convs.add_turn(KEY, ("acct", "key1"), "alice", [{"role": "user", "content": "a"}])
    await convs.save_response(OTHER, ("acct", "key2"), "resp_2", {"response": {}})
    assert await store.prune_conversations(now) == 1
    assert await store.delete_key_conversations("key1") == 1
    assert await convs.history(KEY, "acct", "alice") == []
    assert await convs.response(OTHER, "acct", "resp_2") == {"response": {}}


async def test_sealed_records_move_with_an_sqlite_ledger_into_postgres(
        tmp_path: Path, postgres_url: str) -> None:
    old = SQLiteStore(tmp_path / "ledger.sqlite3")
    await old.open()
    await conversations(old).add_turn(KEY, ("acct", "key1"), "alice",
                                      [{"role": "user", "content": "kept"}])
    original = await old.audit()
    new = PostgresStore(postgres_url)
    await new.open()
    with sqlite3.connect(old.path) as source:
        await copy_sqlite_ledger(source, new, original)
    await old.close()
    assert await conversations(new).history(KEY, "acct", "alice") == [
        {"role": "user", "content": "kept"}]
    await new.close()
