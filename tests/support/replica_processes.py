"""Three (or N) `nexus-app --gateway` replicas as real processes on one PostgreSQL ledger, one
Redis (a prefix of the test's own) and one `nexus-app chain` process, with scripted workers
attached through a failover balancer (`balancer.py`), so that tests can SIGKILL a replica."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus_app.config import Settings
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from tests.support.asgi import free_port
from tests.support.chain_node import ChainProcess, node_port, provision, start_chain, stop
from tests.support.gateways import ROOT, signed_in_account
from tests.support.processes import (
    GatewayProcess,
    clean_environ,
    start_gateway_process,
    start_scripted_worker,
    wait_for_scripted,
)
from tests.support.replicas import replica_settings


@dataclass
class ReplicaSet:
    settings: list[Settings]
    gateways: list[GatewayProcess | None]
    ledger_url: str
    balancer_url: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.settings[index].port}"

    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(len(self.settings))]

    @contextlib.asynccontextmanager
    async def ledger(self) -> AsyncIterator[PostgresStore]:
        """The shared ledger, as the operator's CLI opens it."""
        store = PostgresStore(self.ledger_url, pool_min=1, pool_max=2, replica="test")
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    async def funded_key(self, credit: int, replica: int = 0) -> tuple[str, str, str]:
        """(wallet, API key, session) of a new account granted `credit` base units."""
        account = await signed_in_account(self.url(replica))
        if credit:
            async with self.ledger() as store:
                await store.grant(account.wallet, credit, "test credit")
        return account.wallet, account.api_key, account.session

    async def audit_ok(self) -> bool:
        async with self.ledger() as store:
            return (await store.audit()).ok

    async def attach_workers(self, count: int, *flags: str) -> None:
        """`count` scripted workers through the balancer (on the first live replica),
        once every replica lists them."""
        for _ in range(count):
            self.workers.append(start_scripted_worker(self.balancer_url, "--reconnect", *flags))
        for index, gateway in enumerate(self.gateways):  # every replica sees them
            if gateway is not None:
                await wait_for_scripted(self.url(index), count)

    def kill(self, index: int) -> None:
        gateway = self.gateways[index]
        assert gateway is not None
        gateway.process.send_signal(signal.SIGKILL)
        gateway.process.wait(10)
        self.gateways[index] = None

    def close(self) -> None:
        for process in [*self.workers, *(g.process for g in self.gateways if g)]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, *(g.process for g in self.gateways if g)]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def _balancer(port: int, backends: list[int]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.balancer", "--port", str(port),
         *map(str, backends)], cwd=ROOT, env=clean_environ(), stdout=subprocess.PIPE)
    assert process.stdout is not None and b"ready" in process.stdout.readline()
    return process


@contextlib.contextmanager
def _chain(tmp_path: Path) -> Iterator[ChainProcess]:
    chain = start_chain(tmp_path / "chain", node_port())
    try:
        yield chain
    finally:
        stop(chain)


@contextlib.asynccontextmanager
async def replica_set(tmp_path: Path, ledger_url: str, prefix: str, count: int = 3,
                      **overrides: Any) -> AsyncIterator[ReplicaSet]:
    with _chain(tmp_path) as chain:
        treasury = await provision(chain.url)
        settings = [replica_settings(tmp_path, chain, treasury, prefix, f"r{i}",
                                     ledger_url=ledger_url, **overrides) for i in range(count)]
        gateways: list[GatewayProcess | None] = []
        balancer_port = free_port()
        balancer = _balancer(balancer_port, [s.port for s in settings])
        replicas = ReplicaSet(settings, gateways, ledger_url,
                              f"http://127.0.0.1:{balancer_port}")
        try:
            for one in settings:
                gateways.append(start_gateway_process(one))
            yield replicas
        finally:
            replicas.close()
            balancer.terminate()
            balancer.wait(10)
