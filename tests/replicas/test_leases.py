"""Leases on Redis: one leader at a time among replicas, a successor when it is gone, and
the reservations of a replica whose lease expired refunded by the leader."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from nexus_app.gateway.cluster.leases import Ownership
from nexus_app.gateway.cluster.link import RedisHealth, connect
from tests.support.redis_server import REDIS_URL

TTL_S = 0.6


class Replica:
    """A replica's ownership with what it does as leader recorded."""

    def __init__(self, prefix: str, name: str, refunded: list[str]) -> None:
        self.name = name
        self.leading_now = 0  # leader tasks running now
        self.ownership = Ownership(connect(REDIS_URL), prefix, name, RedisHealth(),
                                   lead=self._lead, refund=self._refund, ttl_s=TTL_S)
        self._refunded = refunded
        self.task = asyncio.create_task(self.ownership.run())

    def _lead(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._work())]

    async def _work(self) -> None:
        self.leading_now += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.leading_now -= 1

    async def _refund(self, replica: str) -> int:
        self._refunded.append(replica)
        return 2


async def test_one_leader_at_a_time_and_a_successor_that_refunds_the_crashed(
        shared: tuple[aioredis.Redis, str]) -> None:
    client, prefix = shared
    refunded: list[str] = []
    replicas = [Replica(prefix, f"r{i}", refunded) for i in range(3)]
    for _ in range(10):  # a few renewal rounds: always exactly one leader
        await asyncio.sleep(TTL_S / 4)
        assert sum(r.leading_now for r in replicas) == 1
    leader = next(r for r in replicas if r.leading_now)
    leader.task.cancel()  # crashed: its leases are not released, they expire
    await asyncio.sleep(0.05)
    assert leader.leading_now == 0
    for _ in range(40):
        await asyncio.sleep(0.1)
        if refunded:
            break
    successors = [r for r in replicas if r is not leader]
    assert sum(r.leading_now for r in successors) == 1
    assert refunded == [leader.name]  # once, by the new leader
    assert await client.smembers(prefix + "replicas") == {b"r0", b"r1", b"r2"} - {
        leader.name.encode()}
    for replica in successors:
        replica.task.cancel()
        await replica.ownership.close()


async def test_a_cleanly_stopped_leader_hands_over_at_once(
        shared: tuple[aioredis.Redis, str]) -> None:
    _, prefix = shared
    refunded: list[str] = []
    first = Replica(prefix, "a", refunded)
    await asyncio.sleep(0.1)
    second = Replica(prefix, "b", refunded)
    await asyncio.sleep(0.1)
    assert (first.leading_now, second.leading_now) == (1, 0)
    first.task.cancel()
    await first.ownership.close()
    for _ in range(20):
        await asyncio.sleep(0.05)
        if second.leading_now:
            break
    assert second.leading_now == 1
    second.task.cancel()
    await second.ownership.close()
