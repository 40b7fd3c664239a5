"""Fixtures of the replica tests: the test Redis under a prefix of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.support.redis_server import redis_prefix


@pytest.fixture
async def shared() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    async with redis_prefix() as found:
        yield found
