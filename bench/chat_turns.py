"""Time to first token of a growing chat, through client -> gateway -> worker, side by side
with the llama.cpp server.

An 8-turn conversation with the bundled model (SmolLM2-135M-Instruct): each turn appends the
previous reply and a new question, so the prompt grows by about 100 tokens a turn. The same
conversation runs on both servers, turn by turn alternating between them (so drift in the
machine's speed hits both alike), greedy, streamed; time to first token is from sending the
request to the first text. The worker keeps each finished chat in its slot's KV cache and
feeds only the new tokens (`cached_tokens` below); the llama.cpp server does the same with
`cache_prompt`. The llama.cpp server is the one `bench/llama_server.py` builds once from the
sources vendored in the installed llama-cpp-python and caches.
Run: `python bench/chat_turns.py [--rounds 3] [--threads N] [--llama-server PATH |
--no-llama-server]`. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import llama_server  # noqa: E402  (bench/, the folder of this script)

from nexus_app.worker.models import bundled_model_path  # noqa: E402
from tests.support.asgi import free_port  # noqa: E402
from tests.support.gateways import make_settings  # noqa: E402
from tests.support.processes import (  # noqa: E402
    MODEL_ID,
    start_gateway_process,
    start_worker_process,
    wait_for_workers,
)

SLOTS = 4
CONTEXT_PER_SLOT = 4096
REPLY_TOKENS = 96
QUESTIONS = [
    "Tell me about lighthouses and the people who kept them.",
    "How did they keep the lamp burning through a storm?",
    "What did a keeper eat during a long winter?",
    "Describe a day in the life of a keeper's child.",
    "Which famous lighthouses still stand today?",
    "How did ships find their way before lighthouses?",
    "What replaced the keepers when lighthouses were automated?",
    "Summarise everything we talked about in a few sentences.",
]


async def turn(http: httpx.AsyncClient, body: dict[str, Any]) -> tuple[float, str, int]:
    """One streamed reply: (seconds to the first text, the text, cached prompt tokens)."""
    started, first, parts, cached = time.perf_counter(), 0.0, [], 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content") or ""
                if text and not first:
                    first = time.perf_counter() - started
                parts.append(text)
            details = (chunk.get("usage") or {}).get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens", cached)
            cached = (chunk.get("timings") or {}).get("cache_n", cached)  # llama.cpp's count
    return first, "".join(parts), cached


class Chat:
    """One conversation on one server."""

    def __init__(self, name: str, http: httpx.AsyncClient, model: str) -> None:
        self.name, self.http, self.model = name, http, model
        self.messages: list[dict[str, str]] = []
        self.first_token_s: list[float] = []
        self.cached: list[int] = []

    async def ask(self, question: str) -> None:
        self.messages.append({"role": "user", "content": question})
        body = {"model": self.model, "messages": self.messages, "max_tokens": REPLY_TOKENS,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        first, text, cached = await turn(self.http, body)
        self.messages.append({"role": "assistant", "content": text})
        self.first_token_s.append(first)
        self.cached.append(cached)


async def rounds(servers: dict[str, tuple[httpx.AsyncClient, str]], count: int
                 ) -> dict[str, list[Chat]]:
    done: dict[str, list[Chat]] = {name: [] for name in servers}
    for _ in range(count):
        chats = {name: Chat(name, http, model) for name, (http, model) in servers.items()}
        for question in QUESTIONS:
            for chat in chats.values():
                await chat.ask(question)
        for name, chat in chats.items():
            done[name].append(chat)
    return done


def report(done: dict[str, list[Chat]]) -> None:
    print(f"{'server':<12} {'TTFT turn 1':>12} {'median 2-8':>12} {'turn 8':>10} "
          f"{'cached turn 8':>14}")
    for name, chats in done.items():
        turn_1 = statistics.median(c.first_token_s[0] for c in chats) * 1e3
        later = statistics.median(t for c in chats for t in c.first_token_s[1:]) * 1e3
        last = statistics.median(c.first_token_s[-1] for c in chats) * 1e3
        cached = statistics.median(c.cached[-1] for c in chats)
        print(f"{name:<12} {turn_1:>10.0f}ms {later:>10.0f}ms {last:>8.0f}ms {cached:>14.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-server", help="a llama-server binary to compare with "
                        "(default: the one bench/llama_server.py builds and caches)")
    parser.add_argument("--no-llama-server", action="store_true", help="the gateway alone")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp) / "gateway", prices={MODEL_ID: {"per_request": 1}})
        gateway = start_gateway_process(settings)
        processes.append(gateway.process)
        try:
            processes.append(start_worker_process(
                gateway.url, Path(tmp) / "worker", NEXUS_SLOTS=str(SLOTS),
                NEXUS_THREADS=str(args.threads), NEXUS_CONTEXT_PER_SLOT=str(CONTEXT_PER_SLOT)))
            wait_for_workers(gateway.url, 1, timeout=120)
            _, key = await gateway.funded_key(10**12)
            servers = {"nexus-app": (httpx.AsyncClient(
                base_url=gateway.url, headers={"Authorization": f"Bearer {key}"},
                timeout=300), MODEL_ID)}
            if not args.no_llama_server:
                model = bundled_model_path()
                assert model is not None
                server, url = llama_server.start(
                    Path(args.llama_server) if args.llama_server else llama_server.binary(),
                    model, port=free_port(), slots=SLOTS, context_per_slot=CONTEXT_PER_SLOT,
                    threads=args.threads)
                processes.append(server)
                servers["llama.cpp"] = (httpx.AsyncClient(base_url=url, timeout=300), MODEL_ID)
            report(await rounds(servers, args.rounds))
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    asyncio.run(main())
