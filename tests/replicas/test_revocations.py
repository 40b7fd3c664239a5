"""Key revocations broadcast over Redis: a key revoked on one replica is refused by the
others within 100 ms, and a key read that began before a revocation is never cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nexus_app.gateway.cluster.limits import SharedLimiter
from nexus_app.gateway.cluster.link import RedisHealth, connect
from nexus_app.gateway.cluster.revocations import Revocations
from nexus_app.gateway.errors import Unauthorized
from nexus_app.gateway.http.auth import (
    KEY_PREFIX,
    SHARED_KEY_CACHE_TTL_S,
    Authenticator,
    hash_secret,
    new_secret,
)
from nexus_app.gateway.ledger.records import ApiKeyRecord
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from tests.support.redis_server import REDIS_URL

SCOPE: dict[str, Any] = {"type": "http", "client": ("127.0.0.1", 5000), "headers": []}


def _scope() -> dict[str, Any]:
    return {**SCOPE, "nexus": {}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    await store.open()
    yield store
    await store.close()


async def replica(store: SQLiteStore, prefix: str) -> tuple[Authenticator, asyncio.Task[None]]:
    """An authenticator as one replica has it, listening for revocations."""
    client, health = connect(REDIS_URL), RedisHealth()
    auth = Authenticator(store, SharedLimiter(client, prefix, health), rpm=1000, tpm=10**6,
                         ip_rpm=1000, session_ttl_s=3600, key_cache_ttl_s=SHARED_KEY_CACHE_TTL_S)
    revocations = Revocations(client, prefix, health, forget=auth.forget_key,
                              forget_all=auth.forget_all_keys)
    auth.broadcast = revocations.publish
    task = asyncio.create_task(revocations.run())
    await asyncio.wait_for(revocations.subscribed.wait(), 5)
    return auth, task


async def new_key(store: SQLiteStore) -> tuple[str, ApiKeyRecord]:
    secret = new_secret(KEY_PREFIX)
    record = ApiKeyRecord(id=f"key_{secret[-8:]}", account="acct", name="k", prefix="p",
                          secret_hash=hash_secret(secret), created_at=time.time())
    await store.add_key(record)
    return secret, record


async def test_a_key_revoked_on_one_replica_is_refused_by_the_others_within_100_ms(
        store: SQLiteStore, shared: tuple[aioredis.Redis, str]) -> None:
    _, prefix = shared
    started = [await replica(store, prefix) for _ in range(3)]
    auths = [auth for auth, _ in started]
    secret, record = await new_key(store)
    for auth in auths:  # every replica has the key cached
        assert (await auth.api_key(_scope(), f"Bearer {secret}")).key_id == record.id
    await store.revoke_key("acct", record.id, time.time())
    revoked_at = time.monotonic()
    await auths[0].revoked(record.secret_hash)
    for auth in auths[1:]:
        while True:
            try:
                await auth.api_key(_scope(), f"Bearer {secret}")
            except Unauthorized:
                break
            assert time.monotonic() - revoked_at < 0.1, "still accepted after 100 ms"
            await asyncio.sleep(0.002)
    assert time.monotonic() - revoked_at < 0.1
    for _, task in started:
        task.cancel()


class SlowReads(SQLiteStore):
    """A ledger whose key reads take a while (a revocation lands during one)."""

    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        found = await super().key_by_hash(secret_hash)
        await asyncio.sleep(0.2)
        return found


async def test_a_key_read_before_a_revocation_is_not_cached(
        tmp_path: Path, shared: tuple[aioredis.Redis, str]) -> None:
    _, prefix = shared
    store = SlowReads(tmp_path / "ledger.sqlite3")
    await store.open()
    auth, task = await replica(store, prefix)
    revoker, revoker_task = await replica(store, prefix)
    secret, record = await new_key(store)
    reading = asyncio.create_task(auth.api_key(_scope(), f"Bearer {secret}"))
    await asyncio.sleep(0.05)  # the read is under way with the unrevoked key
    await store.revoke_key("acct", record.id, time.time())
    await revoker.revoked(record.secret_hash)
    assert (await reading).key_id == record.id  # it began before the revocation
    with pytest.raises(Unauthorized):  # but its stale record was not kept
        await auth.api_key(_scope(), f"Bearer {secret}")
    task.cancel()
    revoker_task.cancel()
    await store.close()
