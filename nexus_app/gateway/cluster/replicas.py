"""One replica among several: its Redis connection and what runs on it (revocations, the
worker registry, cross-replica jobs, leases). The composition root (`service.py`) makes one
when `redis_url` is set; without it the gateway keeps all of this in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nexus_app.config import Settings
from nexus_app.gateway.cluster.challenges import RedisChallenges
from nexus_app.gateway.cluster.leases import Ownership
from nexus_app.gateway.cluster.limits import SharedLimiter
from nexus_app.gateway.cluster.link import FAILURES, RedisHealth, connect
from nexus_app.gateway.cluster.revocations import Revocations
from nexus_app.gateway.http.auth import Authenticator
from nexus_app.gateway.workers.coordinator import Coordinator
from nexus_app.gateway.workers.registry import WorkerRegistry
from nexus_app.gateway.workers.remote import RemoteJobs

log = logging.getLogger(__name__)


class Replica:
    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self.name, self.prefix = settings.replica_id, settings.redis_prefix
        self.client = connect(settings.redis_url)
        self.subscriber = connect(settings.redis_url, retries=0)
        self.health = RedisHealth()
        self.limiter = SharedLimiter(self.client, self.prefix, self.health)
        self._tasks: list[asyncio.Task[None]] = []
        self.revocations: Revocations
        self.remote: RemoteJobs
        self.registry: WorkerRegistry
        self.ownership: Ownership

    async def start(self, auth: Authenticator, coordinator: Coordinator, *,
                    lead: Callable[[], list[asyncio.Task[None]]],
                    refund: Callable[[str], Awaitable[int]]) -> None:
        """Start sharing; returns once revocations and jobs from other replicas are heard."""
        self.revocations = Revocations(self.client, self.prefix, self.health,
                                       forget=auth.forget_key, forget_all=auth.forget_all_keys,
                                       subscriber=self.subscriber)
        auth.broadcast = self.revocations.publish
        auth.shared_challenges = RedisChallenges(self.client, self.prefix, self.health)
        self.remote = RemoteJobs(self.client, self.prefix, self.name, coordinator,
                                 self.subscriber)
        self.registry = WorkerRegistry(self.client, self.prefix, self.name, coordinator,
                                       self.remote)
        self.ownership = Ownership(self.client, self.prefix, self.name, self.health,
                                   lead=lead, refund=refund)
        self._tasks = [asyncio.create_task(part.run()) for part in (
            self.revocations, self.remote, self.registry, self.ownership)]
        waits = [asyncio.create_task(e.wait()) for e in (self.revocations.subscribed,
                                                         self.remote.listening)]
        _, pending = await asyncio.wait(waits, timeout=5)
        for task in pending:
            task.cancel()
        if pending:
            log.error("replica %s: Redis at start did not answer; serving with this replica's "
                      "own limits and workers until it does", self.name)
        log.info("replica %s shares state through Redis (prefix %r)", self.name, self.prefix)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.remote.close()
        await self.ownership.close()
        with contextlib.suppress(*FAILURES):
            await self.registry.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()
            await self.subscriber.aclose()
