"""`gateway_overhead.py --replicas N`: the same load on N gateway replicas sharing one
PostgreSQL ledger, the loopback Redis (a prefix of the run's own, deleted after) and one
`nexus-app chain` process, with the instant worker attached to the first replica.

"local" rows send the requests to the worker's replica; "relayed" rows to the others, so
that every job goes through Redis to it and back. Then a worker that writes the time into
each chunk streams 100-chunk replies through the first replica and through another: the
difference of the chunks' median age on arrival is what relaying adds to each chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import gateway_overhead as g
import httpx
import redis
from solders.keypair import Keypair

from nexus_app.chain.node_setup import make_treasury
from tests.support.chain_node import node_port, start_chain, stop

CLOCK_MODEL = "clock-model"
REDIS_URL = os.environ.get("NEXUS_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def bench_replicas(args: argparse.Namespace) -> None:
    with g.ledger_env("postgresql") as ledger, _replicas(args.replicas, ledger) as (ports, env):
        base_port = g.free_port()
        processes = g.start_processes(f"http://127.0.0.1:{ports[0]}", base_port, env[0])
        processes.append(_worker(ports[0], "--model", CLOCK_MODEL, "--clock", "--reply",
                                 " ".join(["t"] * 100), "--token-delay", "0.002"))
        try:
            for port in ports:  # every replica lists both workers' models
                _wait_models(port, {g.MODEL, CLOCK_MODEL})
            key = asyncio.run(g.account_key(f"http://127.0.0.1:{ports[0]}", env[0]))
            for concurrency in args.concurrency:
                g.measure("local", ports[0], base_port, key, concurrency, args)
                g.measure("relayed", ports[1], base_port, key, concurrency, args)
            local = asyncio.run(_chunk_ages(ports[0], key))
            relayed = asyncio.run(_chunk_ages(ports[1], key))
            _print_ages(local, relayed)
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)


def _worker(port: int, *flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_worker", "--gateway",
         f"http://127.0.0.1:{port}", "--slots", "64", *flags],
        cwd=g.ROOT, stdout=subprocess.DEVNULL)


def _wait_models(port: int, models: set[str]) -> None:
    for _ in range(300):
        listed = {m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]}
        if models <= listed:
            return
        time.sleep(0.1)
    raise SystemExit(f"replica on {port} does not list {models}")


Environment = dict[str, str]


@contextlib.contextmanager
def _replicas(count: int, ledger: Environment) -> Iterator[tuple[list[int], list[Environment]]]:
    """`count` replicas (the first's worker and baseline are started by the caller), each
    with its own environment; yields their ports and environments."""
    data = Path(tempfile.mkdtemp(prefix="nexus-bench-replicas-"))
    chain = start_chain(data / "chain", node_port(), 0.4)
    prefix = f"nexus-bench-{secrets.token_hex(4)}:"
    gateways: list[subprocess.Popen[bytes]] = []
    try:
        treasury = asyncio.run(make_treasury(chain.url, Keypair(), 6))
        keyfile = data / "treasury.json"
        keyfile.write_text(json.dumps(list(bytes(treasury.keypair))))
        keyfile.chmod(0o600)
        ports = [g.free_port() for _ in range(count)]
        env = [_environment(data / f"r{i}", port, f"r{i}", prefix, ledger, chain.url,
                            str(treasury.mint), keyfile) for i, port in enumerate(ports)]
        for i in range(1, count):  # the first is started with its worker by the caller
            gateways.append(subprocess.Popen([sys.executable, "-m", "nexus_app", "--gateway"],
                                             env=env[i], cwd=g.ROOT))
            g.wait_http(f"http://127.0.0.1:{ports[i]}/health", gateways[-1])
        yield ports, env
    finally:
        for process in gateways:
            process.terminate()
            process.wait(10)
        stop(chain)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


def _environment(data: Path, port: int, name: str, prefix: str, ledger: dict[str, str],
                 rpc_url: str, mint: str, keyfile: Path) -> dict[str, str]:
    data.mkdir(parents=True)
    return {**os.environ, **ledger, "NEXUS_DATA_DIR": str(data),
            "NEXUS_CONFIG": str(data / "none.toml"), "NEXUS_PORT": str(port),
            "NEXUS_LOG_LEVEL": "warning", "NEXUS_RATE_LIMIT_RPM": str(10**9),
            "NEXUS_RATE_LIMIT_TPM": str(10**12), "NEXUS_CHAIN": "rpc", "NEXUS_RPC_URL": rpc_url,
            "NEXUS_MINT": mint, "NEXUS_TREASURY_KEYPAIR": str(keyfile),
            "NEXUS_REDIS_URL": REDIS_URL, "NEXUS_REDIS_PREFIX": prefix,
            "NEXUS_REPLICA_ID": name, "NEXUS_CHAIN_POLL_INTERVAL_S": "60",
            "NEXUS_PRICES": json.dumps({g.MODEL: {"per_request": 1},
                                        CLOCK_MODEL: {"per_request": 1}})}


async def _chunk_ages(port: int, key: str, streams: int = 20) -> list[float]:
    """Seconds between a chunk's sending by the worker and its arrival here, for every chunk
    of `streams` streamed replies, one after another."""
    ages: list[float] = []
    body = {"model": CLOCK_MODEL, "max_tokens": 200, "stream": True,
            "messages": [{"role": "user", "content": "time"}]}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for _ in range(streams):
            async with http.stream("POST", "/v1/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {key}"}) as response:
                async for line in response.aiter_lines():
                    arrived = time.time()
                    if not line.startswith("data: {"):
                        continue
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    text = (choices[0].get("delta") or {}).get("content")
                    if text and text.strip():
                        ages.append(arrived - float(text))
    return ages


def _print_ages(local: list[float], relayed: list[float]) -> None:
    def ms(values: list[float], q: float) -> float:
        return g.percentile(values, q) * 1e3

    print(f"chunk age on arrival, ms: local p50 {ms(local, 0.5):.3f} p99 {ms(local, 0.99):.3f}"
          f" | relayed p50 {ms(relayed, 0.5):.3f} p99 {ms(relayed, 0.99):.3f} | added by "
          f"the relay p50 {ms(relayed, 0.5) - ms(local, 0.5):.3f} ms "
          f"({len(relayed)} chunks, mean {statistics.fmean(relayed) * 1e3:.3f} ms)")
