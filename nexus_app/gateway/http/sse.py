"""A Server-Sent Events response that notices a client going away while it waits for data.

Starlette's `StreamingResponse` only sees a disconnect when it next writes; here a watcher
listens for `http.disconnect` so the job is cancelled on its worker at once. `on_close`
always runs, once, after the stream ends for any reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def sse_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class EventStreamResponse(Response):
    def __init__(
        self,
        events: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = 200
        self.background: BackgroundTask | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            pump = asyncio.create_task(self._pump(send))
            watcher = asyncio.create_task(wait_for_disconnect(receive))
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            for task in (pump, watcher):
                task.cancel()
            await asyncio.gather(pump, watcher, return_exceptions=True)
        finally:
            await self.on_close()

    async def _pump(self, send: Send) -> None:
        async for data in self.events:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (after the request body was read)."""
    with contextlib.suppress(Exception):
        while (await receive())["type"] != "http.disconnect":
            pass
