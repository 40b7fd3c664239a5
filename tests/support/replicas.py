"""Gateway replicas for tests: several gateways on one chain (`nexus-app chain` over
JSON-RPC) sharing the test Redis under a prefix of the test's own, and a chat streamed to
one of them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from nexus_app.chain.treasury import Treasury
from nexus_app.config import Settings
from tests.support.chain_node import rpc_settings
from tests.support.gateways import RunningGateway, auth, running_gateway
from tests.support.redis_server import REDIS_URL

CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


def replica_settings(tmp_path: Path, node: Any, treasury: Treasury, prefix: str, name: str,
                     redis_url: str = REDIS_URL, **overrides: Any) -> Settings:
    """Settings of replica `name`: its own data dir, the shared chain and Redis."""
    data_dir = tmp_path / name
    data_dir.mkdir(exist_ok=True)
    return rpc_settings(data_dir, node, treasury, redis_url=redis_url, redis_prefix=prefix,
                        replica_id=name, chain_poll_interval_s=60, **overrides)


@contextlib.asynccontextmanager
async def running_replicas(settings: list[Settings]) -> AsyncIterator[list[RunningGateway]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running_gateway(s)) for s in settings]


async def stream_chat(url: str, key: str, *, stop_after: int | None = None,
                      **body: Any) -> tuple[list[str], str]:
    """Stream a chat: the text of each chunk, and how it ended (`done`, `error`, `left`
    when the client left after `stop_after` chunks, or the HTTP status)."""
    texts: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, http.stream(
            "POST", "/v1/chat/completions", headers=auth(key),
            json={**CHAT, **body, "stream": True}) as response:
        if response.status_code != 200:
            return texts, str(response.status_code)
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return texts, "done"
            if line.startswith('data: {"error"'):
                return texts, "error"
            if line.startswith("data: "):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                if delta.get("content"):
                    texts.append(delta["content"])
                    if stop_after is not None and len(texts) >= stop_after:
                        return texts, "left"
    return texts, "cut"
