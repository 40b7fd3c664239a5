"""Key revocations told to every replica over Redis pub/sub, within milliseconds.

A replica that revokes a key publishes its hash; every replica drops it from its key cache
on receipt. A subscriber that lost its connection may have missed some: on every
(re)subscription it drops its whole cache. While Redis is down the cache's short expiry is
the backstop (`auth.SHARED_KEY_CACHE_TTL_S`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as aioredis

from nexus_app.gateway.cluster.link import FAILURES, RETRY_S, RedisHealth


class Revocations:
    def __init__(self, client: aioredis.Redis, prefix: str, health: RedisHealth, *,
                 forget: Callable[[str], None], forget_all: Callable[[], None],
                 subscriber: aioredis.Redis | None = None) -> None:
        self._client = client
        self._subscriber = subscriber or client  # one that does not retry (`link.connect`)
        self.channel = prefix + "revoked"
        self._health = health
        self._forget, self._forget_all = forget, forget_all
        self.subscribed = asyncio.Event()

    async def publish(self, secret_hash: str) -> None:
        """Tell the other replicas; when Redis is down they learn it from their cache's
        expiry (the revocation itself is in the ledger already)."""
        try:
            await self._client.publish(self.channel, secret_hash)
        except FAILURES as exc:
            self._health.failed("broadcasting a key revocation", exc)

    async def run(self) -> None:
        """Listen for revocations until cancelled, resubscribing after an outage."""
        while True:
            try:
                await self._listen()
            except FAILURES as exc:
                self.subscribed.clear()
                self._health.failed("listening for key revocations", exc)
                await asyncio.sleep(RETRY_S)

    async def _listen(self) -> None:
        async with self._subscriber.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self._forget_all()  # what was published while not subscribed is not known
            self.subscribed.set()
            self._health.ok()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=None)
                if message is not None and message["type"] == "message":
                    self._forget(message["data"].decode())
