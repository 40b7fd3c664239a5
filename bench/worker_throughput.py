"""Generation speed through client -> gateway -> worker, against the llama.cpp server and raw
llama-cpp-python.

Measures, with the bundled model (SmolLM2-135M-Instruct) and the same prompt, sampling and CPU
thread count:

- raw: `llama_cpp.Llama.create_completion` in this process, on the chat prompt the worker
  builds (the worker idles meanwhile);
- gateway: a minimal SSE client (httpx) streaming from a real gateway (`nexus-app --gateway`)
  that relays to a real worker (`nexus-app --worker`), both started here as subprocesses; one
  more row streams through the official `openai` package, whose per-chunk parsing (about 1 ms
  of CPU a token) competes with decoding on a 2-core machine;
- the llama.cpp server with as many slots, built once from the sources vendored in the
  installed llama-cpp-python (`bench/llama_server.py`; `--no-llama-server` to leave it out);
- the growing 8-turn chat of `bench/chat_turns.py` on the gateway and the server, turn by turn
  alternating: time to first token of its later turns, where prompt-prefix reuse counts.

After a warm-up, `--repeat` rounds each run every configuration once, alternating so that
drift in the machine's speed hits all alike; medians are printed, "vs raw" is the median of
each round's ratio, and the targets compare the gateway with the llama.cpp server (with raw
llama-cpp-python when it is left out). Tokens/s is completion tokens over the wall time of the
stream(s); first token is the time from sending a request to its first text (the mean over
four streams). Llama serves one request at a time, so four raw requests run one after another.
Nothing else should run meanwhile: llama.cpp slows down sharply when its threads share the
cores.
Run: `python bench/worker_throughput.py [--max-tokens 256] [--repeat 3] [--threads N]
[--llama-server PATH | --no-llama-server]`.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
from llama_cpp import Llama
from llama_cpp.llama_types import CreateCompletionStreamResponse
from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import chat_turns  # noqa: E402  (bench/, the folder of this script)
import llama_server  # noqa: E402

from nexus_app.worker.models import LocalModel, resolve  # noqa: E402
from nexus_app.worker.prompts import ChatTemplate  # noqa: E402
from tests.support.asgi import free_port  # noqa: E402
from tests.support.gateways import make_settings  # noqa: E402
from tests.support.llama_cpp_amx import without_extra_buffers_on_amx  # noqa: E402
from tests.support.processes import (  # noqa: E402
    start_gateway_process,
    start_worker_process,
    wait_for_workers,
)

STREAMS = 4
SEED = 1234
TEMPERATURE = 0.7
TOP_K = 40  # the worker's default; the openai client cannot send it
N_CTX = 4096  # the worker's context per slot
WARM_UP_TOKENS = 16
CREDIT = 10**12
# targets, as a share of the llama.cpp server's (of raw llama-cpp-python's without one)
SINGLE_TARGET = 0.95  # single-stream decode tokens/s
CONCURRENT_TARGET = 1.0  # four streams, aggregate tokens/s
CHAT_TARGET = 1.0  # time to first token of a chat's later turns (at most)
MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are a storyteller who writes long, detailed stories."},
    {"role": "user", "content": "Write a very long story about a lighthouse keeper who finds "
                                "a map in a bottle. Describe every place and person in detail."},
]


@dataclass(frozen=True)
class Stream:
    """One completion: tokens generated, and its first token and end in seconds from start."""

    tokens: int
    first_token_s: float
    end_s: float


@dataclass(frozen=True)
class Sample:
    """One run of a configuration: all its tokens, its wall time, its mean first token."""

    tokens: int
    seconds: float
    first_token_s: float

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class Result:
    """The medians of a configuration's runs."""

    rate: float
    first_token_ms: float
    tokens: float


def sample(streams: list[Stream], seconds: float) -> Sample:
    return Sample(sum(s.tokens for s in streams), seconds,
                  statistics.fmean(s.first_token_s for s in streams))


def median(samples: list[Sample]) -> Result:
    return Result(statistics.median(s.rate for s in samples),
                  statistics.median(s.first_token_s for s in samples) * 1e3,
                  statistics.median(s.tokens for s in samples))


# raw llama-cpp-python


def load_raw(local: LocalModel, threads: int) -> tuple[Llama, list[int]]:
    """The model loaded by llama-cpp-python, and the worker's chat prompt as tokens."""
    without_extra_buffers_on_amx()  # as the worker loads it
    llm = Llama(str(local.path), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                verbose=False)
    bos = llm.detokenize([llm.token_bos()], special=True).decode()
    eos = llm.detokenize([llm.token_eos()], special=True).decode()
    text = ChatTemplate(local.chat_template, bos, eos).prompt({"messages": MESSAGES}).text
    return llm, llm.tokenize(text.encode(), add_bos=False, special=True)


def raw_stream(llm: Llama, prompt: list[int], max_tokens: int, seed: int) -> Stream:
    """One streamed completion; its tokens are max_tokens unless the model ended it."""
    llm.reset()  # no reuse of the previous request's prompt cache: the worker has none
    started = time.perf_counter()
    first_token_s, finish = 0.0, None
    pieces: list[str] = []
    chunks = cast(Iterator[CreateCompletionStreamResponse], llm.create_completion(
        prompt, max_tokens=max_tokens, stream=True, temperature=TEMPERATURE, top_k=TOP_K,
        top_p=1.0, min_p=0.0, repeat_penalty=1.0, seed=seed))
    for chunk in chunks:
        choice = chunk["choices"][0]
        if choice["text"] and not pieces:
            first_token_s = time.perf_counter() - started
        pieces.append(choice["text"])
        finish = choice["finish_reason"] or finish
    end_s = time.perf_counter() - started
    tokens = max_tokens if finish == "length" else len(
        llm.tokenize("".join(pieces).encode(), add_bos=False, special=True))
    return Stream(tokens, first_token_s, end_s)


# client -> gateway -> worker


async def lean_stream(http: httpx.AsyncClient, body: dict[str, Any], started: float
                      ) -> tuple[int, float]:
    """A minimal SSE reader: (completion tokens from the usage chunk, first text seconds)."""
    first_token_s, tokens, counted = 0.0, 0, 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = orjson.loads(line[6:])
            choices = chunk["choices"]
            if not first_token_s and choices and choices[0]["delta"].get("content"):
                first_token_s = time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif choices and choices[0]["delta"].get("content"):
                counted += 1  # a server that sends no usage: one token a chunk
    return tokens or counted, first_token_s


async def sdk_stream(client: AsyncOpenAI, body: dict[str, Any], started: float
                     ) -> tuple[int, float]:
    """The same through the official `openai` package (which parses every chunk)."""
    first_token_s, tokens = 0.0, 0
    stream = await client.chat.completions.create(**body)
    async for chunk in stream:
        if not first_token_s and chunk.choices and chunk.choices[0].delta.content:
            first_token_s = time.perf_counter() - started
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return tokens, first_token_s


async def gateway_run(client: httpx.AsyncClient | AsyncOpenAI, model: str, max_tokens: int,
                      streams: int) -> Sample:
    """`streams` concurrent completions; the wall time is until the last one ends."""
    started = time.perf_counter()

    async def one(seed: int) -> Stream:
        body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens,
                "temperature": TEMPERATURE, "seed": seed, "stream": True,
                "stream_options": {"include_usage": True}}
        if isinstance(client, AsyncOpenAI):
            tokens, first = await sdk_stream(client, body, started)
        else:
            tokens, first = await lean_stream(client, body, started)
        return Stream(tokens, first, time.perf_counter() - started)

    done = await asyncio.gather(*(one(SEED + i) for i in range(streams)))
    return sample(list(done), max(s.end_s for s in done))


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# rounds


RAW_SINGLE, RAW_SEQUENTIAL = "raw single", f"raw sequential ({STREAMS}) *"
GATEWAY_SINGLE, GATEWAY_SDK = "gateway single", "gateway single, openai"
GATEWAY_CONCURRENT = f"gateway {STREAMS} concurrent"
SERVER_SINGLE, SERVER_CONCURRENT = "llama.cpp server single", f"llama.cpp server {STREAMS} conc."


def raw_run(llm: Llama, prompt: list[int], max_tokens: int, streams: int) -> Sample:
    """`streams` raw requests one after another."""
    done = [raw_stream(llm, prompt, max_tokens, SEED + i) for i in range(streams)]
    return sample(done, sum(s.end_s for s in done))


Chats = dict[str, list[chat_turns.Chat]]


async def chat_round(clients: dict[str, httpx.AsyncClient], model: str, chats: Chats) -> None:
    """The growing 8-turn chat once on each server, turn by turn alternating."""
    started = {name: chat_turns.Chat(name, http, model) for name, http in clients.items()}
    for question in chat_turns.QUESTIONS:
        for chat in started.values():
            await chat.ask(question)
    for name, chat in started.items():
        chats.setdefault(name, []).append(chat)


async def rounds(llm: Llama, prompt: list[int], url: str, key: str, model: str,
                 max_tokens: int, repeat: int, server_url: str | None
                 ) -> tuple[dict[str, list[Sample]], Chats]:
    """Each round runs every configuration once, raw, gateway and the llama.cpp server
    alternating, so that drift in this machine's speed hits all alike (the idle ones take no
    CPU meanwhile), then the growing chat on the gateway and the server."""
    chats: Chats = {}
    names = [RAW_SINGLE, GATEWAY_SINGLE, GATEWAY_SDK, RAW_SEQUENTIAL, GATEWAY_CONCURRENT]
    samples: dict[str, list[Sample]] = {name: [] for name in names + (
        [SERVER_SINGLE, SERVER_CONCURRENT] if server_url else [])}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as http, \
            httpx.AsyncClient(base_url=server_url or url, timeout=600) as server, \
            AsyncOpenAI(base_url=url + "/v1", api_key=key, timeout=600) as sdk:
        raw_run(llm, prompt, WARM_UP_TOKENS, 1)
        await gateway_run(http, model, WARM_UP_TOKENS, 1)
        for _ in range(repeat):
            samples[RAW_SINGLE].append(raw_run(llm, prompt, max_tokens, 1))
            samples[GATEWAY_SINGLE].append(await gateway_run(http, model, max_tokens, 1))
            samples[GATEWAY_SDK].append(await gateway_run(sdk, model, max_tokens, 1))
            if server_url:
                samples[SERVER_SINGLE].append(await gateway_run(server, model, max_tokens, 1))
            samples[RAW_SEQUENTIAL].append(raw_run(llm, prompt, max_tokens, STREAMS))
            samples[GATEWAY_CONCURRENT].append(
                await gateway_run(http, model, max_tokens, STREAMS))
            if server_url:
                samples[SERVER_CONCURRENT].append(
                    await gateway_run(server, model, max_tokens, STREAMS))
            await chat_round({"gateway": http, **({"llama.cpp": server} if server_url else {})},
                             model, chats)
    return samples, chats


def measure(tmp: Path, local: LocalModel, threads: int, max_tokens: int, repeat: int,
            server_path: Path | None) -> tuple[dict[str, list[Sample]], Chats]:
    llm, prompt = load_raw(local, threads)
    gateway = start_gateway_process(make_settings(tmp / "gateway"))
    processes = [gateway.process]
    server_url = None
    try:
        if server_path:
            server, server_url = llama_server.start(
                server_path, local.path, port=free_port(), slots=STREAMS,
                context_per_slot=N_CTX, threads=threads)
            processes.append(server)
        _, key = asyncio.run(gateway.funded_key(CREDIT))
        processes.insert(0, start_worker_process(
            gateway.url, tmp / "worker", NEXUS_THREADS=str(threads), NEXUS_SLOTS=str(STREAMS),
            NEXUS_LOG_LEVEL="warning"))
        wait_for_workers(gateway.url, 1, timeout=120, process=processes[0])
        return asyncio.run(rounds(llm, prompt, gateway.url, key, local.id, max_tokens, repeat,
                                  server_url))
    finally:
        for process in processes:  # the worker first: it drains, then the gateway stops
            stop(process)
        llm.close()


# report


def report(samples: dict[str, list[Sample]]) -> None:
    baseline = {GATEWAY_SINGLE: RAW_SINGLE, GATEWAY_SDK: RAW_SINGLE,
                GATEWAY_CONCURRENT: RAW_SEQUENTIAL, SERVER_SINGLE: RAW_SINGLE,
                SERVER_CONCURRENT: RAW_SEQUENTIAL}
    print(f"{'config':<24} {'tokens/s':>9} {'vs raw':>7} {'first token ms':>15} {'tokens':>7}")
    for name, runs in samples.items():
        result = median(runs)
        base = baseline.get(name, name)
        ratio = statistics.median(r.rate / b.rate for r, b in zip(runs, samples[base],
                                                                   strict=True))
        print(f"{name:<24} {result.rate:>9.1f} {ratio:>6.2f}x "
              f"{result.first_token_ms:>15.0f} {result.tokens:>7.0f}")
    print(f"* llama-cpp-python's Llama serves one request at a time: {STREAMS} requests one "
          "after another (first token: their mean). 'vs raw': median of each round's ratio.")
    for ours, theirs, target in ((GATEWAY_SINGLE, SERVER_SINGLE, SINGLE_TARGET),
                                 (GATEWAY_CONCURRENT, SERVER_CONCURRENT, CONCURRENT_TARGET)):
        if theirs not in samples:  # no llama.cpp server: against raw llama-cpp-python
            theirs = baseline[ours]
        share = statistics.median(g.rate / r.rate for g, r in zip(
            samples[ours], samples[theirs], strict=True))
        print(f"target {ours} >= {target:.2f} x {theirs}: {share:.3f} "
              f"{'PASS' if share >= target else 'FAIL'}")


def report_chats(chats: Chats) -> None:
    print("\ngrowing 8-turn chat, time to first token (median of rounds):")
    chat_turns.report(chats)
    if "llama.cpp" in chats:
        ours, theirs = (statistics.median(t for c in chats[name] for t in c.first_token_s[1:])
                        for name in ("gateway", "llama.cpp"))
        print(f"target chat turns 2-8 <= {CHAT_TARGET:.2f} x llama.cpp: {ours / theirs:.3f} "
              f"{'PASS' if ours / theirs <= CHAT_TARGET else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--llama-server", help="a llama-server binary to compare with "
                        "(default: the one bench/llama_server.py builds and caches)")
    parser.add_argument("--no-llama-server", action="store_true",
                        help="compare with raw llama-cpp-python only")
    args = parser.parse_args()
    server = None if args.no_llama_server else (
        Path(args.llama_server) if args.llama_server else llama_server.binary())
    tmp = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    local = resolve([], tmp / "models")[0]
    print(f"model {local.id}, {args.threads} threads, {args.max_tokens} tokens a stream, "
          f"median of {args.repeat} rounds; load average {os.getloadavg()[0]:.2f}; "
          f"logs in {tmp}")
    samples, chats = measure(tmp, local, args.threads, args.max_tokens, args.repeat, server)
    report(samples)
    report_chats(chats)


if __name__ == "__main__":
    main()
