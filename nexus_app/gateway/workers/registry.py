"""The worker registry on Redis: which workers each replica holds, their models and free
slots, under a key that expires unless the replica renews it (its heartbeat).

Every HEARTBEAT_S each replica writes its own entry and reads the others', which become the
coordinator's `remote` links (sent to through `remote.py`). A replica whose entry expired is
gone: its links are dropped and their jobs end as with a lost worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from nexus_app.gateway.workers.coordinator import WorkerLink
from nexus_app.protocol import Hardware, ModelCard

if TYPE_CHECKING:
    from nexus_app.gateway.workers.coordinator import Coordinator
    from nexus_app.gateway.workers.remote import RemoteJobs

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.5
ENTRY_TTL_S = 3.0  # an entry not renewed in this is a replica gone
FAILURES = (RedisError, OSError, TimeoutError)


class WorkerRegistry:
    def __init__(self, client: aioredis.Redis, prefix: str, replica: str,
                 coordinator: Coordinator, remote: RemoteJobs) -> None:
        self._client, self._prefix, self.replica = client, prefix, replica
        self.coordinator, self.remote = coordinator, remote
        self._members = prefix + "worker-replicas"
        self.failing = False

    def _entry(self, replica: str) -> str:
        return f"{self._prefix}workers:{replica}"

    async def run(self) -> None:
        """Heartbeat and refresh until cancelled. While Redis is down the other replicas'
        workers are given up after ENTRY_TTL_S (their state is unknown)."""
        last_ok = asyncio.get_running_loop().time()
        while True:
            try:
                await self.beat()
                await self.refresh()
                last_ok, self.failing = asyncio.get_running_loop().time(), False
            except FAILURES as exc:
                if not self.failing:
                    log.error("worker registry: Redis failed (%s); only this replica's "
                              "workers serve its requests until it is back",
                              type(exc).__name__)
                self.failing = True
                if asyncio.get_running_loop().time() - last_ok > ENTRY_TTL_S:
                    self._adopt({})
            await asyncio.sleep(HEARTBEAT_S)

    async def beat(self) -> None:
        workers = [_describe(w) for w in self.coordinator.workers.values()]
        entry = orjson.dumps({"replica": self.replica, "workers": workers,
                              "serving": self.remote.serving})
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.set(self._entry(self.replica), entry, px=int(ENTRY_TTL_S * 1000))
            pipe.sadd(self._members, self.replica)
            await pipe.execute()

    async def close(self) -> None:
        """Withdraw this replica's entry: the others stop sending it jobs at once."""
        await self._client.delete(self._entry(self.replica))

    async def refresh(self) -> None:
        members = await self._client.smembers(self._members)
        names = sorted(n for n in (m.decode() if isinstance(m, bytes) else m for m in members)
                       if n != self.replica)
        entries = await self._client.mget([self._entry(n) for n in names]) if names else []
        found: dict[str, dict[str, Any]] = {}
        serving: dict[str, set[str]] = {}
        for name, entry in zip(names, entries, strict=True):
            if entry is None:
                await self._client.srem(self._members, name)  # gone: its entry expired
                continue
            described = orjson.loads(entry)
            serving[name] = set(described.get("serving", ()))
            for worker in described["workers"]:
                found[worker["id"]] = {**worker, "replica": name}
        self._adopt(found)
        self.remote.check(serving)

    def _adopt(self, found: dict[str, dict[str, Any]]) -> None:
        """Make `found` the coordinator's remote links: keep known links (their jobs), add
        new ones, and end the jobs of those gone."""
        links = self.coordinator.remote
        for link_id in [i for i in links if i not in found]:
            link = links.pop(link_id)
            log.info("worker %s on replica %s is gone", link_id, link.replica)
            self.remote.lost(link)
        for link_id, worker in found.items():
            models = {m: ModelCard.model_validate(c) for m, c in worker["models"].items()}
            if link_id not in links:
                links[link_id] = WorkerLink(
                    wallet=worker["wallet"], models=models, slots=1, hardware=Hardware(),
                    version="", send=self.remote.sender(worker["replica"], link_id),
                    id=link_id, replica=worker["replica"])
            link = links[link_id]
            link.models = models
            # free there, plus what this replica already sent it (counted there too)
            room = worker["free"] + len(link.jobs)
            link.slots = max(1, room)
            link.draining = worker["draining"] or room == 0
            if worker["free"] > 0:
                for model in models:
                    self.coordinator.wake(model)


def _describe(worker: WorkerLink) -> dict[str, Any]:
    return {"id": worker.id, "wallet": worker.wallet, "draining": worker.draining,
            "free": max(0, worker.slots - len(worker.jobs)),
            "models": {m: c.model_dump() for m, c in worker.models.items()}}
