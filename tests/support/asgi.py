"""An ASGI app served on loopback inside the test's event loop: how the tests stand up the
other parties a gateway talks to (webhook targets, hostile relays, the RPC node double)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


@contextlib.asynccontextmanager
async def served(server: uvicorn.Server, stop_timeout: float = 10) -> AsyncIterator[None]:
    """Run `server` in this event loop until the block ends."""
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout)


@contextlib.asynccontextmanager
async def serving(app: Any, port: int | None = None, **config: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (a test double of another party: a webhook target, a hostile relay,
    an RPC node) on loopback in this event loop; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", **config))
    async with served(server):
        yield f"http://127.0.0.1:{port}"
