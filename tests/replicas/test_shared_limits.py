"""Rate limits counted on Redis: replicas together enforce a key's limit once."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from nexus_app.gateway.cluster.limits import SharedLimiter
from nexus_app.gateway.cluster.link import RedisHealth, connect
from tests.support.redis_server import REDIS_URL, UNREACHABLE_URL


def replicas(prefix: str, count: int) -> list[SharedLimiter]:
    """`count` limiters, each with its own connection, as separate replicas have."""
    return [SharedLimiter(connect(REDIS_URL), prefix, RedisHealth()) for _ in range(count)]


async def test_three_replicas_admit_a_keys_rpm_once(
        shared: tuple[aioredis.Redis, str]) -> None:
    _, prefix = shared
    limiters = replicas(prefix, 3)
    verdicts = await asyncio.gather(*(limiters[i % 3].hit("key:k1", 60) for i in range(150)))
    allowed = [v for v in verdicts if v.allowed]
    assert len(allowed) == 60
    refused = [v for v in verdicts if not v.allowed]
    assert all(1 <= v.retry_after <= 60 and v.quota.remaining == 0 for v in refused)
    assert sorted(v.quota.remaining for v in allowed) == list(range(60))
    # another key has its own window
    assert (await limiters[1].hit("key:k2", 60)).allowed


async def test_tokens_counted_on_one_replica_limit_the_others(
        shared: tuple[aioredis.Redis, str]) -> None:
    _, prefix = shared
    first, second = replicas(prefix, 2)
    assert (await first.hit("key:t", 100, tpm=1000)).allowed
    await first.add_tokens("key:t", 1000)
    verdict = await second.hit("key:t", 100, tpm=1000)
    assert not verdict.allowed and verdict.retry_after >= 1


async def test_redis_down_counts_per_replica_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    limiter = SharedLimiter(connect(UNREACHABLE_URL), "p:", RedisHealth())
    with caplog.at_level(logging.ERROR):
        verdicts = [await limiter.hit("key:d", 3) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    outages = [r for r in caplog.records if "REDIS UNREACHABLE" in r.getMessage()]
    assert len(outages) == 1 and "per replica" in outages[0].getMessage()
