"""Fixtures of the replica tests: the test Redis under a prefix of the test's own, and two
in-process replicas on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.treasury import Treasury
from tests.support.chain_node import provision
from tests.support.gateways import RunningGateway
from tests.support.redis_server import redis_prefix
from tests.support.replicas import replica_settings, running_replicas


@pytest.fixture
async def shared() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    async with redis_prefix() as found:
        yield found


@pytest.fixture
async def treasury(node: ChainNode) -> Treasury:
    return await provision(node.url)


@pytest.fixture
async def pair(node: ChainNode, treasury: Treasury, tmp_path: Path,
               shared: tuple[aioredis.Redis, str]) -> AsyncIterator[list[RunningGateway]]:
    """In-process replicas `a` and `b` with ledgers of their own: only the Redis and the
    chain are shared."""
    _, prefix = shared
    settings = [replica_settings(tmp_path, node, treasury, prefix, name) for name in "ab"]
    async with running_replicas(settings) as replicas:
        yield replicas
