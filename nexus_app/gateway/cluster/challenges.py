"""Sign-in challenges on Redis: a wallet may ask one replica for its challenge and send the
signed message to another. Each is stored under its nonce until it expires and taken with
GETDEL, so a signed message logs in once across all replicas. The replica that issued it
keeps it too (its bounded book), which serves a login to the same replica while Redis is
down."""

from __future__ import annotations

import dataclasses
import time

import orjson
import redis.asyncio as aioredis

from nexus_app.gateway.cluster.link import FAILURES, RedisHealth
from nexus_app.gateway.http.challenges import SignInChallenge


class RedisChallenges:
    def __init__(self, client: aioredis.Redis, prefix: str, health: RedisHealth) -> None:
        self._client, self._prefix, self._health = client, prefix + "siws:", health

    @property
    def down(self) -> bool:
        return self._health.down

    async def put(self, challenge: SignInChallenge) -> None:
        ttl_ms = max(1, int((challenge.expires_at - time.time()) * 1000))
        try:
            await self._client.set(self._prefix + challenge.nonce,
                                   orjson.dumps(dataclasses.asdict(challenge)), px=ttl_ms)
        except FAILURES as exc:
            self._health.failed("storing a sign-in challenge", exc)

    async def take(self, nonce: str) -> SignInChallenge | None:
        try:
            found = await self._client.getdel(self._prefix + nonce)
        except FAILURES as exc:
            self._health.failed("taking a sign-in challenge", exc)
            return None
        self._health.ok()
        return SignInChallenge(**orjson.loads(found)) if found else None
