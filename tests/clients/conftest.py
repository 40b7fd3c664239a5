"""One real network per test module for the third-party client tests: a `nexus-app --gateway`
subprocess, one `nexus-app --worker` serving the bundled SmolLM2 model, and a funded API key.
Starting the worker loads the model, so a module shares one network across its tests."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.gateways import make_settings
from tests.support.processes import (
    MODEL_ID,
    GatewayProcess,
    start_gateway_process,
    start_worker_process,
    wait_for_workers,
)

CREDIT = 50_000_000  # base units: far more than a module's requests cost


@dataclass
class Network:
    gateway: GatewayProcess
    wallet: str
    api_key: str
    model: str = MODEL_ID

    @property
    def base_url(self) -> str:
        """The OpenAI base URL that clients are given."""
        return self.gateway.url + "/v1"


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("network")
    gateway = start_gateway_process(make_settings(root / "gateway"))
    worker: subprocess.Popen[bytes] | None = None
    try:
        wallet, key = asyncio.run(gateway.funded_key(CREDIT))
        worker = start_worker_process(gateway.url, root / "worker")
        wait_for_workers(gateway.url, 1, timeout=120, process=worker)
        yield Network(gateway, wallet, key)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(10)
        gateway.process.terminate()
        try:
            gateway.process.wait(10)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
