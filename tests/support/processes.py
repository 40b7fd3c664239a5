"""Gateways, workers and scripted workers (TEST DOUBLES, no model) as real subprocesses, so
that tests can kill them like real ones, and a process's resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from nexus_app.config import Settings
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from tests.support.gateways import ROOT, signed_in_account


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


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def start_scripted_worker(url: str, *flags: str) -> subprocess.Popen[bytes]:
    """`python -m tests.support.scripted_worker` joining the gateway at `url`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_worker", "--gateway", url, *flags],
        cwd=ROOT, env=clean_environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def wait_for_scripted(url: str, count: int, timeout: float = 30) -> None:
    """Until the gateway at `url` lists `count` workers for scripted-model (asynchronously:
    the gateway may run in this event loop)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                listing = (await http.get("/v1/models")).json()["data"]
                if sum(m["workers"] for m in listing if m["id"] == "scripted-model") == count:
                    return
            assert time.monotonic() < deadline, f"{count} scripted workers not online"
            await asyncio.sleep(0.1)
