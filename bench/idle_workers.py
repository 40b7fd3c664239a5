"""What an idle connected worker costs the gateway: resident memory per worker connection.

Starts a real gateway (`nexus-app --gateway`), then connects `--workers` idle workers to it from
this one process: raw WebSocket clients with a keypair each that answer the challenge with a
signed `hello` (what `nexus-app --worker` sends for the bundled model, or with `--hello max` the
largest hello the protocol allows: 16 models with 64-character ids and 16 GPUs), with `--burst`
one large frame, and then stay silent. Prints the gateway's RSS before and after, and the
difference per connected worker.
Run: `python bench/idle_workers.py [--workers 1000] [--hello real|max] [--burst BYTES]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets
from solders.keypair import Keypair

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nexus_app.chain.wallet import sign  # noqa: E402
from nexus_app.protocol import (  # noqa: E402
    MAX_GPUS,
    MAX_MODEL_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_WORKER_MODELS,
    PROTOCOL_VERSION,
    Error,
    Hello,
    encode,
    parse_gateway_frame,
    worker_auth_message,
    worker_url,
)
from tests.support.gateways import make_settings  # noqa: E402
from tests.support.processes import rss_bytes, start_gateway_process  # noqa: E402

HANDSHAKES_AT_ONCE = 8  # under the gateway's limit of pending handshakes per address


def real_hello() -> dict[str, Any]:
    """The hello of a CPU worker serving the bundled SmolLM2 model (less its signature)."""
    return {
        "models": [{"id": "smollm2-135m-instruct-q4_1", "file": "smollm2-135m-instruct.q4_1.gguf",
                    "parameters": 135_000_000, "quantization": "Q4_1", "context_length": 2048}],
        "hardware": {"accelerator": "cpu", "cpu_threads": 16,
                     "note": "CPU only: NVML unavailable (Driver Not Loaded)"},
        "slots": 4, "version": "0.1.0",
    }


def max_hello() -> dict[str, Any]:
    """The largest hello the protocol accepts: every list and string at its limit."""
    card = {"file": "f" * 255, "parameters": 10**12, "quantization": "q" * 32,
            "context_length": 2**20}
    gpu = {"name": "n" * 96, "driver": "d" * 80, "vram_total_mb": 81_920, "vram_free_mb": 1,
           "utilization_pct": 100, "temperature_c": 90, "power_w": 700.0}
    return {
        "models": [{**card, "id": f"{n:02d}" + "m" * (MAX_MODEL_ID_LENGTH - 2)}
                   for n in range(MAX_WORKER_MODELS)],
        "hardware": {"accelerator": "cuda", "gpus": [gpu] * MAX_GPUS, "cpu_threads": 256,
                     "note": "x" * MAX_NOTE_LENGTH},
        "slots": 256, "version": "v" * 64,
    }


async def connect_worker(url: str, hello: dict[str, Any], gate: asyncio.Semaphore,
                         burst: int = 0) -> websockets.ClientConnection:
    """One worker, connected and ready, that will say nothing more."""
    keypair = Keypair()
    async with gate:
        ws = await websockets.connect(url, max_size=2**20)
        challenge = parse_gateway_frame(await ws.recv())
        frame = Hello(protocol=PROTOCOL_VERSION, wallet=str(keypair.pubkey()),
                      signature=sign(keypair, worker_auth_message(challenge.nonce)),  # type: ignore[union-attr]
                      **hello)
        await ws.send(encode(frame))
        await ws.recv()  # ready
        await ws.recv()  # earnings
        if burst:  # one large frame (an error about the worker itself, only logged), then quiet
            await ws.send(encode(Error(code="worker_error", message="x" * burst)))
    return ws


async def connect_all(url: str, count: int, hello: dict[str, Any], burst: int = 0) -> list[Any]:
    gate = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    return list(await asyncio.gather(*(connect_worker(url, hello, gate, burst)
                                       for _ in range(count))))


async def settled_rss(pid: int, seconds: float = 2.0) -> int:
    """The gateway's RSS once it has stopped changing for a moment."""
    await asyncio.sleep(seconds)
    return rss_bytes(pid)


async def measure(args: argparse.Namespace, data_dir: Path) -> None:
    settings = make_settings(data_dir, log_level="warning",
                             worker_connections_per_address=args.workers + 100)
    gateway = start_gateway_process(settings)
    url = worker_url(gateway.url)
    hello = max_hello() if args.hello == "max" else real_hello()
    try:
        warm = await connect_all(url, 50, hello)  # every code path run once, then gone
        for ws in warm:
            await ws.close()
        before = await settled_rss(gateway.process.pid)
        started = time.monotonic()
        workers = await connect_all(url, args.workers, hello, args.burst)
        took = time.monotonic() - started
        after = await settled_rss(gateway.process.pid, args.settle)
        per_worker = (after - before) / args.workers
        sent = f", then a {args.burst}-byte frame each" if args.burst else ""
        print(f"{args.workers} idle workers ({args.hello} hello{sent}) connected in {took:.1f} s; "
              f"gateway RSS {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after: "
              f"{per_worker / 1024:.1f} KiB per connected worker")
        for ws in workers:
            await ws.close()
    finally:
        gateway.process.terminate()
        gateway.process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--hello", choices=("real", "max"), default="real")
    parser.add_argument("--burst", type=int, default=0, metavar="BYTES",
                        help="each worker sends one frame this large after its hello")
    parser.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                        help="wait before measuring (the gateway's keepalive ping, every "
                        "20 s, releases the last frame a connection's parser holds)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(measure(args, Path(folder) / "data"))


if __name__ == "__main__":
    main()
