"""How many concurrent streaming chats one gateway holds, and how fast.

Starts a real gateway (`nexus-app --gateway`) and scripted test workers (TEST DOUBLES that
stream a fixed reply at a fixed pace, no model), each in a process of its own, then opens
`--streams` streaming chats at once, `--rounds` times, each on a new connection.
Prints per round: streams/s, relayed tokens/s, time to first token (p50, p99) and the
gateway's resident memory; then the ledger audit.
Run: `python bench/stream_load.py [--streams 200] [--rounds 3] [--workers 4] [--tokens 40]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.gateways import make_settings  # noqa: E402
from tests.support.processes import (  # noqa: E402
    rss_bytes,
    start_gateway_process,
    start_scripted_worker,
    wait_for_scripted,
)

CHAT = {"model": "scripted-model", "stream": True,
        "messages": [{"role": "user", "content": "Count."}]}


def request_bytes(port: int, key: str) -> bytes:
    body = orjson.dumps(CHAT)
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def one_stream(port: int, request: bytes) -> tuple[float, int]:
    """(seconds to the first token, tokens received) of one streamed chat, read with a bare
    socket: an HTTP client parsing hundreds of streams would be the bottleneck, not the
    gateway."""
    started, first, tokens = time.monotonic(), None, 0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    status = await reader.readline()
    assert b" 200 " in status, status
    while line := await reader.readline():  # each SSE event arrives whole in its own chunk
        if line.startswith(b"data: {") and b'"content":"' in line \
                and b'"content":""' not in line:
            first = first or time.monotonic() - started
            tokens += 1
    writer.close()
    assert first is not None, "a stream without a token"
    return first, tokens


async def run(args: argparse.Namespace, folder: Path) -> None:
    settings = make_settings(folder / "data", rate_limit_rpm=1_000_000,
                             rate_limit_tpm=1_000_000_000, queue_max=10_000)
    gateway = start_gateway_process(settings)
    reply = " ".join(f"t{i}" for i in range(args.tokens))
    workers = [start_scripted_worker(gateway.url, "--slots", str(args.slots), "--token-delay",
                                     str(args.token_delay), "--reply", reply)
               for _ in range(args.workers)]
    try:
        await wait_for_scripted(gateway.url, args.workers)
        _, key = await gateway.funded_key(10**15)
        request = request_bytes(settings.port, key)
        print(f"{args.streams} concurrent streams of {args.tokens} tokens, {args.workers} "
              f"workers x {args.slots} slots, a token every {args.token_delay * 1000:g} ms; "
              f"gateway RSS idle {rss_bytes(gateway.process.pid) / 2**20:.0f} MiB")
        print(f"{'round':>5} {'streams/s':>10} {'tokens/s':>9} {'ttft p50':>9} "
              f"{'ttft p99':>9} {'RSS MiB':>8}")
        for number in range(1, args.rounds + 1):
            started = time.monotonic()
            results = await asyncio.gather(
                *(one_stream(settings.port, request) for _ in range(args.streams)))
            elapsed = time.monotonic() - started
            firsts = sorted(first for first, _ in results)
            tokens = sum(count for _, count in results)
            p99 = firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))]
            print(f"{number:>5} {args.streams / elapsed:>10.0f} {tokens / elapsed:>9.0f} "
                  f"{statistics.median(firsts) * 1000:>7.0f}ms {p99 * 1000:>7.0f}ms "
                  f"{rss_bytes(gateway.process.pid) / 2**20:>8.0f}")
        ledger = await gateway.open_ledger()
        audit = await ledger.audit()
        print(f"ledger invariant: {audit.ok}, open reservations: {audit.open_reservations}")
        await ledger.close()
    finally:
        for process in [*workers, gateway.process]:
            process.kill()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-delay", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
