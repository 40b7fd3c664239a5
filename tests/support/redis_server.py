"""The Redis the replica tests share (a real server on loopback, REDIS_URL or
127.0.0.1:6379), each test under its own key prefix, deleted afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis

REDIS_URL = os.environ.get("NEXUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def new_prefix() -> str:
    return f"nexus-test-{secrets.token_hex(6)}:"


async def delete_prefix(client: aioredis.Redis, prefix: str) -> int:
    """Delete every key under `prefix`; returns how many."""
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    return len(keys)


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A client of the test Redis and a fresh prefix, whose keys are deleted at the end."""
    client = aioredis.Redis.from_url(REDIS_URL)
    prefix = new_prefix()
    try:
        await client.ping()
        yield client, prefix
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()
