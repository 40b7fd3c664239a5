"""Leases on Redis: a replica's own (it is alive), and the leader's (the one replica that
runs the chain watcher, payout reconciliation and webhook delivery).

A lease is a key holding its owner's token with an expiry, renewed at a third of it. The
leader also refunds the reservations of replicas whose lease expired (they crashed or lost
Redis for longer than the lease): their jobs are gone with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from nexus_app.gateway.cluster.link import FAILURES, RedisHealth

log = logging.getLogger(__name__)

LEASE_S = 5.0
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """One named lease. `hold()` takes or renews it; `held` stays True only until the
    expiry of the last renewal this process saw succeed, whatever Redis does meanwhile."""

    def __init__(self, client: aioredis.Redis, key: str, ttl_s: float = LEASE_S) -> None:
        self.key, self.ttl_s = key, ttl_s
        self.token = secrets.token_hex(8)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._until = 0.0

    @property
    def held(self) -> bool:
        return time.monotonic() < self._until

    async def hold(self) -> bool:
        started = time.monotonic()
        if await self._renew(keys=[self.key], args=[self.token, int(self.ttl_s * 1000)]):
            self._until = started + self.ttl_s
        else:
            self._until = 0.0
        return self.held

    async def release(self) -> None:
        self._until = 0.0
        await self._release(keys=[self.key], args=[self.token])


class Ownership:
    """This replica's lease and, when it wins it, the leader's. `lead` starts the leader's
    tasks; they are cancelled when the lease is lost (or Redis is unreachable for as long as
    the lease), so that two replicas never run them at once."""

    def __init__(self, client: aioredis.Redis, prefix: str, replica: str, health: RedisHealth,
                 *, lead: Callable[[], list[asyncio.Task[None]]],
                 refund: Callable[[str], Awaitable[int]], ttl_s: float = LEASE_S) -> None:
        self._client, self._prefix, self.replica = client, prefix, replica
        self._health = health
        self.own = Lease(client, f"{prefix}replica:{replica}", ttl_s)
        self.leader = Lease(client, f"{prefix}leader", ttl_s)
        self._lead, self._refund = lead, refund
        self._led: list[asyncio.Task[None]] = []

    @property
    def leading(self) -> bool:
        return bool(self._led)

    async def run(self) -> None:
        """Renew the leases until cancelled."""
        try:
            while True:
                await self._round()
                await asyncio.sleep(self.own.ttl_s / 3)
        finally:
            self._step_down()

    async def _round(self) -> None:
        try:
            had = self.own.held
            await self.own.hold()
            await self._client.sadd(self._prefix + "replicas", self.replica)
            if had and not self.own.held:
                log.error("replica %s: its lease was taken over; other replicas may have "
                          "refunded its reservations", self.replica)
            if await self.leader.hold():
                if not self._led:
                    log.info("replica %s leads: chain watcher, payouts, webhooks",
                             self.replica)
                    self._led = self._lead()
                await self._reap()
            self._health.ok()
        except FAILURES as exc:
            self._health.failed("renewing leases", exc)
        if self._led and not self.leader.held:
            log.warning("replica %s no longer leads", self.replica)
            self._step_down()

    def _step_down(self) -> None:
        for task in self._led:
            task.cancel()
        self._led = []

    async def _reap(self) -> None:
        """Refund the reservations of replicas whose lease expired."""
        for name in await self._client.smembers(self._prefix + "replicas"):
            replica = name.decode() if isinstance(name, bytes) else name
            if replica == self.replica:
                continue
            if await self._client.exists(f"{self._prefix}replica:{replica}"):
                continue
            refunded = await self._refund(replica)
            if refunded:
                log.warning("replica %s is gone (lease expired): refunded %d reservation(s)",
                            replica, refunded)
            await self._client.srem(self._prefix + "replicas", replica)

    async def close(self) -> None:
        self._step_down()
        with contextlib.suppress(*FAILURES):
            await self.leader.release()
            await self.own.release()  # the leader then finds it gone: nothing left open
