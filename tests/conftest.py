"""Shared fixtures: a real gateway on loopback (in-process uvicorn, or a subprocess), a
temporary data dir, funded accounts with API keys, and scripted test workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from solders.keypair import Keypair

from nexus_app.client.gateway import GatewayClient
from nexus_app.config import Settings, load_settings
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.money.solvency import check_solvency
from nexus_app.gateway.server import uvicorn_config
from nexus_app.gateway.service import Gateway
from tests.asgi import free_port, served
from tests.scripted_worker import ScriptedWorker

ROOT = Path(__file__).resolve().parent.parent


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "config": data_dir / "absent.toml",
        "port": free_port(),
        "log_level": "warning",
        "prices": {"scripted-model": {"per_request": 1000}},
        # a scripted chat earns a worker 800 base units: claimable (the default is 1 NEXUS;
        # tests/security/test_payout_attacks.py checks it)
        "min_payout": "0.000001",
    }
    values.update(overrides)
    return load_settings(values, environ={})


@dataclass
class Account:
    keypair: Keypair
    api_key: str
    session: str

    @property
    def wallet(self) -> str:
        return str(self.keypair.pubkey())


async def signed_in_account(url: str) -> Account:
    """A new wallet, signed in to the gateway at `url`, with one API key."""
    keypair = Keypair()
    async with GatewayClient(url) as client:
        session = await client.sign_in(keypair)
        key = await client.create_key("test")
    return Account(keypair, key.key, session)


@dataclass
class RunningGateway:
    settings: Settings
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def gateway(self) -> Gateway:
        return self.server.config.app.state.gateway  # type: ignore[no-any-return]

    @property
    def store(self) -> SQLiteStore:
        return self.gateway.store  # type: ignore[return-value]

    async def account(self, credit: int = 0) -> Account:
        """A new wallet with `credit` granted, signed in, with one API key."""
        account = await signed_in_account(self.url)
        if credit:
            await self.store.grant(account.wallet, credit, "test credit")
        return account

    async def worker(self, **kwargs: Any) -> ScriptedWorker:
        return await ScriptedWorker(self.url, **kwargs).start()

    async def assert_solvent(self) -> int:
        """The ledger invariant holds and the treasury's balance on chain covers all that is
        owed (only where credit came from deposits: a grant is backed by nothing); returns
        the surplus."""
        audit, solvency = await check_solvency(self.store, self.gateway.chain,
                                               self.gateway.treasury.token_account)
        assert audit.ok, audit
        assert solvency.ok and solvency.treasury_balance >= solvency.owed, solvency
        return solvency.surplus


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    config = uvicorn_config(settings)
    config.lifespan = "on"
    server = uvicorn.Server(config)
    async with served(server, stop_timeout=15):
        yield RunningGateway(settings, server)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A ledger of its own, without a gateway."""
    store = SQLiteStore(tmp_path / "ledger.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def http(gw: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class GatewayProcess:
    """`nexus-app --gateway` as a real subprocess."""

    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    async def open_ledger(self) -> SQLiteStore:
        """A second connection to the gateway's ledger, as the operator's CLI has."""
        store = SQLiteStore(self.settings.db_path)
        await store.open()
        return store

    async def audit_ok(self) -> bool:
        """Whether the ledger invariant holds, read as the operator's CLI reads it."""
        store = await self.open_ledger()
        try:
            return (await store.audit()).ok
        finally:
            await store.close()

    def assert_paid_from(self, wallet: str, credit: int) -> None:
        """The account spent some of its `credit`, what it did not spend is still its
        balance, and the ledger invariant holds (for tests that run no event loop)."""
        async def check() -> None:
            store = await self.open_ledger()
            try:
                spent, balance = store.db.execute(
                    "SELECT total_spent, balance FROM accounts WHERE account = ?", (wallet,)
                ).fetchone()
                assert spent > 0 and spent + balance == credit
                assert (await store.audit()).ok
            finally:
                await store.close()

        asyncio.run(check())

    async def funded_key(self, credit: int) -> tuple[str, str]:
        """(wallet, API key) of a new account granted `credit` base units."""
        account = await signed_in_account(self.url)
        store = await self.open_ledger()
        await store.grant(account.wallet, credit, "test credit")
        await store.close()
        return account.wallet, account.api_key


def clean_environ() -> dict[str, str]:
    """This process's environment without any NEXUS_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}


def env_for(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the settings that were set explicitly."""
    import json

    env = clean_environ()
    values = settings.model_dump(mode="json", include=settings.model_fields_set | {"config"})
    for name, value in values.items():
        if value is not None:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            env[f"NEXUS_{name.upper()}"] = text
    return env


def start_gateway_process(settings: Settings) -> GatewayProcess:
    log_path = settings.data_dir.parent / f"gateway-{settings.port}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus_app", "--gateway"],
        env=env_for(settings), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{settings.port}/health", timeout=1).is_success:
                return GatewayProcess(settings, process, log_path)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("gateway did not start")


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


MODEL_ID = "smollm2-135m-instruct-q4_1"  # the bundled SmolLM2 model's id


def start_worker_process(gateway_url: str, data_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """`nexus-app --worker` serving the bundled SmolLM2 model, as a real subprocess."""
    data_dir.mkdir(parents=True, exist_ok=True)
    environ = clean_environ()
    environ.update({"NEXUS_DATA_DIR": str(data_dir), "NEXUS_CONFIG": str(data_dir / "absent"),
                    "NEXUS_LOG_LEVEL": "info", **env})
    log = (data_dir / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "nexus_app", "--worker", "--gateway", gateway_url],
        env=environ, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )


def workers_serving(gateway_url: str, model: str = MODEL_ID) -> int:
    """How many workers the gateway lists for `model` (0 when it is unreachable)."""
    try:
        listing = httpx.get(f"{gateway_url}/v1/models", timeout=2).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return sum(m["workers"] for m in listing if m["id"] == model)


def wait_for_workers(gateway_url: str, count: int, timeout: float = 60,
                     process: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until `count` workers serve the bundled model; fails after `timeout`, or at
    once if the worker `process` exits."""
    start = time.monotonic()
    while workers_serving(gateway_url) != count:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the worker exited with status {process.returncode}")
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{count} worker(s) not online after {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


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
