"""Fixtures of the replica tests: the test Redis under a prefix of the test's own, and two
in-process replicas on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.treasury import Treasury
from tests.support.chain_node import provision
from tests.support.gateways import RunningGateway
from tests.support.postgres import fresh_schema
from tests.support.redis_server import redis_prefix
from tests.support.replica_processes import ReplicaSet, replica_set
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


@pytest.fixture
def ledger_schema(postgres_database: str | None) -> Iterator[str]:
    """A fresh PostgreSQL schema for the replicas' shared ledger."""
    with fresh_schema(postgres_database) as url:
        yield url


@pytest.fixture
async def replicas(tmp_path: Path, ledger_schema: str,
                   shared: tuple[aioredis.Redis, str]) -> AsyncIterator[ReplicaSet]:
    """Three replica processes on one PostgreSQL ledger, one Redis and one chain process."""
    async with replica_set(tmp_path, ledger_schema, shared[1]) as running:
        yield running
