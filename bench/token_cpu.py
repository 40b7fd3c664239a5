"""Where a streamed token's CPU time goes, outside llama.cpp's decoding.

Runs a real gateway and a real worker (the bundled SmolLM2 model) as subprocesses, streams
chat completions through them (one stream, then four at once), and reads every thread's CPU
time from /proc before and after. It prints the CPU microseconds per generated token of:

- the worker's event-loop thread (Python: handing tokens over, tool-call reading, framing,
  the WebSocket),
- the worker's engine thread and llama.cpp's own threads (decoding and sampling),
- the gateway process (parsing and checking frames, relaying, SSE).

CPU time (the scheduler's nanosecond count of each thread) moves less than tokens/s when other
work shares the cores, but still by up to a third between runs on a 2-core machine (caches,
wake-ups): compare a change in several alternating runs. On two cores, every microsecond the
loop threads spend is taken from decoding.
Run: `python bench/token_cpu.py [--max-tokens 256] [--threads N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.gateways import make_settings  # noqa: E402
from tests.support.processes import (  # noqa: E402
    MODEL_ID,
    start_gateway_process,
    start_worker_process,
    wait_for_workers,
)

PROMPT = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of `pid`'s main thread (its event loop) under "loop", and
    of all its other threads together (the engine, llama.cpp's, tokenizing) under "other"."""
    seconds: dict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds["loop" if task.name == str(pid) else "other"] += on_cpu(task)
        except OSError:
            continue  # the thread ended meanwhile
    return seconds


def on_cpu(task: Path) -> float:
    """Seconds a thread (or a process's threads) ran, from the scheduler's nanosecond
    count (the tick counts of /proc/PID/stat are 10 ms coarse)."""
    return int((task / "schedstat").read_text().split()[0]) / 1e9


def process_cpu(pid: int) -> float:
    return sum(on_cpu(task) for task in Path(f"/proc/{pid}/task").iterdir())


async def stream(http: httpx.AsyncClient, max_tokens: int, seed: int) -> int:
    body = {"model": MODEL_ID, "messages": PROMPT, "max_tokens": max_tokens, "seed": seed,
            "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = orjson.loads(line[6:]).get("usage")
                tokens = usage["completion_tokens"] if usage else tokens
    return tokens


async def measure(http: httpx.AsyncClient, worker: int, gateway: int, streams: int,
                  max_tokens: int) -> None:
    before_w, before_g, started = thread_cpu(worker), process_cpu(gateway), time.monotonic()
    tokens = sum(await asyncio.gather(*(stream(http, max_tokens, i) for i in range(streams))))
    wall = time.monotonic() - started
    after_w, after_g = thread_cpu(worker), process_cpu(gateway)
    loop = after_w["loop"] - before_w["loop"]
    engine = after_w["other"] - before_w["other"]  # threads that ended meanwhile are missed
    per = 1e6 / tokens
    print(f"{streams} stream(s): {tokens} tokens in {wall:.1f} s ({tokens / wall:.1f}/s); "
          f"CPU µs per token: worker loop {loop * per:.0f}, engine + llama.cpp "
          f"{engine * per:.0f}, gateway {(after_g - before_g) * per:.0f}")


async def run(url: str, key: str, worker: int, gateway: int, max_tokens: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        await stream(http, 16, 0)  # warm-up
        for streams in (1, 4, 1, 4):
            await measure(http, worker, gateway, streams, max_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gateway = start_gateway_process(make_settings(Path(tmp) / "gateway"))
        worker = start_worker_process(gateway.url, Path(tmp) / "worker",
                                      NEXUS_THREADS=str(args.threads), NEXUS_SLOTS="4",
                                      NEXUS_LOG_LEVEL="warning")
        try:
            wait_for_workers(gateway.url, 1, timeout=120, process=worker)
            _, key = asyncio.run(gateway.funded_key(10**12))
            asyncio.run(run(gateway.url, key, worker.pid, gateway.process.pid,
                            args.max_tokens))
        finally:
            for process in (worker, gateway.process):
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
