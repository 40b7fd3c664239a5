"""The README's nginx and Caddy configurations, run in front of two replicas: a chat
streamed through the balancer, a wallet sign-in whose challenge and login may reach
different replicas, and a worker attached through it (its WebSocket upgraded)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from nexus_app.chain.node_server import ChainNode
from nexus_app.chain.treasury import Treasury
from nexus_app.client.gateway import GatewayClient
from tests.support.asgi import free_port
from tests.support.chain_node import wait_until
from tests.support.gateways import ROOT, RunningGateway, auth
from tests.support.readme import code_blocks
from tests.support.replicas import replica_settings, running_replicas, stream_chat
from tests.support.scripted_worker import DEFAULT_REPLY, ScriptedWorker

SECTION = (ROOT / "README.md").read_text().split("\n## More than one machine\n")[1].split(
    "\n## ")[0]
ADDRESS = re.compile(r"10\.0\.0\.1\d:8080")


def _backends(block: str, ports: list[int]) -> str:
    """The README's three replica addresses made the test's, in turn."""
    turn = itertools.count()
    return ADDRESS.sub(lambda _: f"127.0.0.1:{ports[next(turn) % len(ports)]}", block)


def nginx_config(port: int, backends: list[int], temp: Path) -> str:
    """The README's nginx block on loopback ports, without TLS, in a whole nginx.conf."""
    [block] = code_blocks(SECTION, "nginx")
    block = _backends(block, backends)
    block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    block = re.sub(r"\n\s*ssl_certificate\S* [^;]+;", "", block)
    temps = " ".join(f"{kind}_temp_path {temp / kind};" for kind in (
        "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"pid {temp / 'nginx.pid'};\nerror_log {temp / 'error.log'};\nevents {{}}\n"
            f"http {{\naccess_log off;\n{temps}\n{block}\n}}\n")


def caddy_config(port: int, backends: list[int]) -> str:
    """The README's Caddyfile on loopback ports, over plain HTTP, without the admin API."""
    [block] = code_blocks(SECTION, "caddy")
    block = _backends(block, backends)
    return "{\n\tadmin off\n}\n" + block.replace("nexus.example.com", f"http://127.0.0.1:{port}")


@contextlib.asynccontextmanager
async def balancer(kind: str, port: int, backends: list[int],
                   temp: Path) -> AsyncIterator[None]:
    if shutil.which(kind) is None:
        pytest.skip(f"{kind} is not installed")
    temp.mkdir()
    if kind == "nginx":
        config = temp / "nginx.conf"
        config.write_text(nginx_config(port, backends, temp))
        command = ["nginx", "-c", str(config), "-g", "daemon off;"]
    else:
        config = temp / "Caddyfile"
        config.write_text(caddy_config(port, backends))
        command = ["caddy", "run", "--config", str(config), "--adapter", "caddyfile"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={"HOME": str(temp), "PATH": "/usr/sbin:/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient(timeout=1) as http:  # the replicas run in this loop
            while True:
                assert process.poll() is None, f"{kind} exited"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                assert time.monotonic() < deadline, f"{kind} did not answer"
                await asyncio.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(params=["nginx", "caddy"])
async def behind(request: pytest.FixtureRequest, node: ChainNode, treasury: Treasury,
                 tmp_path: Path, shared: tuple[aioredis.Redis, str], ledger_schema: str,
                 ) -> AsyncIterator[tuple[str, list[RunningGateway]]]:
    """(the balancer's URL, two replicas on one ledger behind it), with the README's
    configuration of nginx or Caddy."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = [replica_settings(tmp_path, node, treasury, shared[1], name, public_url=url,
                                 ledger_url=ledger_schema) for name in "ab"]
    async with running_replicas(settings) as replicas:
        async with balancer(request.param, port, [s.port for s in settings], tmp_path / "lb"):
            yield url, replicas


async def test_sign_in_chat_and_a_worker_through_the_balancer(
        behind: tuple[str, list[RunningGateway]]) -> None:
    url, replicas = behind
    worker = await ScriptedWorker(url, token_delay_s=0.01).start()  # the WebSocket upgraded
    attached = [r for r in replicas if worker.worker_id in r.gateway.coordinator.workers]
    assert len(attached) == 1
    await wait_until(lambda: _everywhere(replicas, worker), timeout=5)
    async with GatewayClient(url) as client:  # challenge and login: either replica
        for _ in range(3):
            await client.sign_in(worker.keypair)
        key = (await client.create_key("through the balancer")).key
    await replicas[0].store.grant(worker.wallet, 10_000, "test credit")
    for _ in range(4):  # both replicas answer, relaying the worker's chunks as they come
        texts, ended = await stream_chat(url, key)
        assert ended == "done" and "".join(texts) == DEFAULT_REPLY and len(texts) > 1
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{url}/v1/balance", headers=auth(key))
    assert answer.status_code == 200
    await worker.stop()


async def _everywhere(replicas: list[RunningGateway], worker: ScriptedWorker) -> bool:
    """Every replica knows the worker: its own, or in the registry."""
    return all(worker.worker_id in {w.id for w in r.gateway.coordinator.everywhere()}
               for r in replicas)
