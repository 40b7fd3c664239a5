"""Fixtures shared by every test: a ledger of its own, a real gateway on loopback (in-process
uvicorn, or a subprocess) and real worker processes. The helpers they use live in
`tests/support/`."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from nexus_app.chain.node_server import ChainNode, running_node
from nexus_app.config import Settings
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import Store
from tests.support.chain_node import BLOCK_S, node_port
from tests.support.gateways import RunningGateway, make_settings, running_gateway
from tests.support.postgres import fresh_schema, run_database
from tests.support.processes import GatewayProcess, start_gateway_process, start_worker_process

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `both_ledgers` that use a ledger run once on each backend."""
    if "ledger_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
            "both_ledgers"):
        metafunc.parametrize("ledger_url", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """This test run's own PostgreSQL database (None without a server)."""
    with run_database() as url:
        yield url


@pytest.fixture
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The ledger of the test's store and gateway: None for SQLite in the data dir (the
    default), or a fresh PostgreSQL schema's URL."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    with fresh_schema(request.getfixturevalue("postgres_database")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_database: str | None) -> Iterator[str]:
    """A fresh PostgreSQL schema's URL, for tests of the PostgreSQL ledger alone."""
    with fresh_schema(postgres_database) as url:
        yield url


@pytest.fixture
async def store(tmp_path: Path, ledger_url: str | None) -> AsyncIterator[Store]:
    """A ledger of its own, without a gateway."""
    store: Store = (PostgresStore(ledger_url) if ledger_url
                    else SQLiteStore(tmp_path / "ledger.sqlite3"))
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def gw(tmp_path: Path, ledger_url: str | None) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, ledger_url=ledger_url)) as running:
        yield running


@pytest.fixture
async def http(gw: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        yield client


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[ChainNode]:
    """`nexus-app chain` served in this event loop: a fresh local chain over JSON-RPC, a block
    every 50 ms."""
    async with running_node(tmp_path / "chain", port=node_port(), block_s=BLOCK_S) as running:
        yield running


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(settings: Settings | None = None) -> GatewayProcess:
        running = start_gateway_process(settings or make_settings(tmp_path / "data"))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.terminate()
            try:
                running.process.wait(10)
            except subprocess.TimeoutExpired:
                running.process.kill()


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts workers; kills whatever is still running at the end of the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(gateway_url: str, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        process = start_worker_process(gateway_url, tmp_path / name, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
