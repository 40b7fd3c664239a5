"""Latency the gateway adds, and its throughput, over an instant worker.

Starts a real gateway (`nexus-app --gateway`) and the scripted test worker (instant
one-token replies) as separate processes, then drives non-streaming chat completions over
keep-alive connections at several concurrency levels (`--endpoint responses` sends the same
turn to `/v1/responses`). The same load is sent to a bare
asyncio HTTP server that answers instantly: "added" is the gateway's latency minus that
baseline's. `--ledger postgresql` runs the same load on a PostgreSQL ledger (a database of
its own on the loopback server, dropped after) next to SQLite's. `--replicas 3` then runs it
on three replicas (one PostgreSQL ledger, the loopback Redis, a `nexus-app chain` process)
with the worker on the first: requests sent to it ("local") and to the others ("relayed",
each job relayed through Redis), and the latency a streamed chunk gains when relayed.
Run: `python bench/gateway_overhead.py [--seconds 5] [--endpoint responses] [--ledger postgresql]
[--replicas 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
from solders.keypair import Keypair

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexus_app.client.gateway import GatewayClient  # noqa: E402
from nexus_app.config import load_settings  # noqa: E402
from nexus_app.gateway.service import ledger_store  # noqa: E402

MODEL = "instant-model"
BODIES = {
    "chat": ("/v1/chat/completions", {"model": MODEL, "max_tokens": 16,
                                      "messages": [{"role": "user", "content": "ping"}]}),
    "responses": ("/v1/responses", {"model": MODEL, "max_output_tokens": 16, "input": "ping"}),
}
INSTANT_REPLY = json.dumps({
    "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_bytes(port: int, key: str, endpoint: str) -> bytes:
    path, body = BODIES[endpoint]
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


async def _read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def drive(port: int, key: str, concurrency: int, seconds: float,
                endpoint: str = "chat") -> tuple[list[float], int]:
    """Closed-loop load: `concurrency` connections, each sending one request at a time."""
    payload = request_bytes(port, key, endpoint)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(payload)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, errors


async def instant_server(port: int) -> None:
    """The baseline: a bare HTTP/1.1 server answering every request at once."""
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(INSTANT_REPLY)).encode() + b"\r\n\r\n" + INSTANT_REPLY)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length"):
                        length = int(line.split(b":")[1])
                if not line:
                    break
                await reader.readexactly(length)
                writer.write(response)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"{url}: process exited")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def account_key(url: str, settings_env: dict[str, str]) -> str:
    keypair = Keypair()
    async with GatewayClient(url) as client:
        await client.sign_in(keypair)
        key = (await client.create_key("bench")).key
    store = ledger_store(load_settings({}, environ=settings_env))
    await store.open()
    await store.grant(str(keypair.pubkey()), 10**15, "benchmark credit")
    await store.close()
    return str(key)


@contextlib.contextmanager
def ledger_env(ledger: str) -> Iterator[dict[str, str]]:
    """The environment that points a gateway at `ledger`: SQLite in its data dir, or a new
    PostgreSQL database (on NEXUS_BENCH_POSTGRES, default the loopback server), dropped
    afterwards."""
    if ledger == "sqlite":
        yield {}
        return
    server = os.environ.get("NEXUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    name = f"nexus_bench_{os.getpid()}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(f"{server}/postgres")
        await conn.execute(statement)
        await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield {"NEXUS_LEDGER_URL": f"{server}/{name}"}
    finally:
        asyncio.run(admin(f"DROP DATABASE {name} WITH (FORCE)"))


def bench_ledger(ledger: str, args: argparse.Namespace) -> None:
    """Start a gateway on `ledger`, a worker and the baseline server; print a row per
    concurrency level, then whether the ledger invariant holds."""
    with ledger_env(ledger) as extra:
        data = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
        port, base_port = free_port(), free_port()
        env = {**os.environ, "NEXUS_DATA_DIR": str(data),
               "NEXUS_CONFIG": str(data / "none.toml"), "NEXUS_PORT": str(port),
               "NEXUS_LOG_LEVEL": "warning", "NEXUS_RATE_LIMIT_RPM": str(10**9),
               "NEXUS_RATE_LIMIT_TPM": str(10**12),
               "NEXUS_PRICES": json.dumps({MODEL: {"per_request": 1}}), **extra}
        url = f"http://127.0.0.1:{port}"
        processes = start_processes(url, base_port, env)
        try:
            key = asyncio.run(account_key(url, {k: v for k, v in env.items()
                                                if k.startswith("NEXUS_")}))
            for concurrency in args.concurrency:
                measure(ledger, port, base_port, key, concurrency, args)
            audit = subprocess.run(
                [sys.executable, "-m", "nexus_app", "admin", "audit", "--json", "--ledger-only"],
                env=env, cwd=ROOT, capture_output=True, text=True)  # the credit is a grant
            print(f"{ledger} ledger invariant after the run:", json.loads(audit.stdout)["ok"])
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)


def start_processes(url: str, base_port: int,
                    env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    processes = [subprocess.Popen([sys.executable, "-m", "nexus_app", "--gateway"], env=env,
                                  cwd=ROOT)]
    wait_http(url + "/health", processes[0])
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "tests.support.scripted_worker", "--gateway", url,
         "--model", MODEL, "--slots", "256", "--reply", "ok"],
        cwd=ROOT, stdout=subprocess.DEVNULL))
    while not httpx.get(url + "/v1/models").json()["data"]:
        time.sleep(0.1)
    processes.append(subprocess.Popen(
        [sys.executable, "-c", "import asyncio, sys; sys.path.insert(0, 'bench'); "
         f"import gateway_overhead as g; asyncio.run(g.instant_server({base_port}))"],
        cwd=ROOT))
    time.sleep(0.5)
    return processes


def measure(ledger: str, port: int, base_port: int, key: str, concurrency: int,
            args: argparse.Namespace) -> None:
    asyncio.run(drive(port, key, concurrency, 1.0, args.endpoint))  # warm-up
    gw_lat, errors = asyncio.run(drive(port, key, concurrency, args.seconds, args.endpoint))
    base_lat, _ = asyncio.run(drive(base_port, key, concurrency, args.seconds))
    p50, p99 = percentile(gw_lat, 0.5) * 1e3, percentile(gw_lat, 0.99) * 1e3
    b50, b99 = percentile(base_lat, 0.5) * 1e3, percentile(base_lat, 0.99) * 1e3
    print(f"{ledger:>10} {concurrency:>11} {len(gw_lat) / args.seconds:>8.0f} {p50:>8.2f} "
          f"{p99:>8.2f} {b50:>9.2f} {b99:>9.2f} {p50 - b50:>10.2f} {p99 - b99:>10.2f} "
          f"{errors:>6}  (mean {statistics.fmean(gw_lat) * 1e3:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--endpoint", choices=sorted(BODIES), default="chat")
    parser.add_argument("--ledger", choices=["sqlite", "postgresql"], default="sqlite",
                        help="postgresql: the same load on a PostgreSQL ledger, after SQLite")
    parser.add_argument("--replicas", type=int, default=1,
                        help="N > 1: then the same load on N replicas sharing Redis")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(f"{'ledger':>10} {'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'base p50':>9} {'base p99':>9} {'added p50':>10} {'added p99':>10} {'errors':>6}")
    for ledger in ["sqlite"] + (["postgresql"] if args.ledger == "postgresql" else []):
        bench_ledger(ledger, args)
    if args.replicas > 1:
        from replicas_overhead import bench_replicas

        bench_replicas(args)


if __name__ == "__main__":
    main()
