"""Relaying a ticket's job events to the client: collected into one response, or streamed as
Server-Sent Events in an endpoint's own chunk shapes. Either way the ticket is closed
(settled or refunded) exactly once.

Every event was checked against the job before it gets here (see `workers/job_guard.py`), so nothing
is settled that failed validation. What is billed:
- a job that ends with the worker's `done`: what was delivered (token counts capped by the
  bytes relayed and by `max_tokens`);
- a client that leaves, or reads a stream too slowly (`ClientTooSlow`): the job is
  cancelled on its worker and billed for what was delivered before, as the worker reports it
  within a short grace period (refunded in full when it does not);
- a job whose worker fails, is lost or sends a result that fails validation: refunded in
  full, the worker earns nothing, also when part of a stream was already sent (what was sent
  cannot be unsent, but it is not billed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from starlette.types import Receive

from nexus_app.gateway.errors import ApiError, ClientGone
from nexus_app.gateway.http.sse import EventStreamResponse, sse_data, wait_for_disconnect
from nexus_app.gateway.service import Gateway, Ticket
from nexus_app.protocol import Chunk, Done


class StreamShapes(Protocol):
    """The SSE payloads of one streamed response."""

    def opening(self) -> bytes | None: ...
    def chunk(self, event: Chunk) -> bytes | None: ...
    def closing(self, done: Done, usage: dict[str, int]) -> bytes:
        """Everything after the last chunk: finish reason, usage, end of stream."""
        ...

    def failure(self, error: ApiError) -> bytes: ...


def error_event(error: ApiError) -> bytes:
    """An error in the middle of a Chat or Completions stream, as OpenAI sends it."""
    return sse_data(orjson.dumps(error.body()))


END_OF_STREAM = sse_data(b"[DONE]")  # the last event of a Chat or Completions stream


def usage_body(ticket: Ticket) -> dict[str, Any]:
    """The usage as billed (token counts capped by what the gateway relayed), with `cost`:
    what the request was charged, in token base units, and the prompt tokens the worker
    found in its cache (billed like the others)."""
    billed = ticket.billed
    prompt, completion = (billed.prompt_tokens, billed.completion_tokens) if billed else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": ticket.cached_tokens},
            "cost": billed.cost if billed else 0}


async def collect(gateway: Gateway, ticket: Ticket, receive: Receive
                  ) -> tuple[list[Chunk], Done]:
    """Every chunk of the job and its `done`, then settle. A client that leaves first (read
    from `receive`) stops the job on its worker at once, as a stream's does."""
    chunks: list[Chunk] = []
    done: Done | None = None

    async def gather() -> None:
        nonlocal done
        async for event in ticket.stream:
            if isinstance(event, Chunk):
                chunks.append(event)
            else:
                done = event

    try:
        job = asyncio.create_task(gather())
        watcher = asyncio.create_task(wait_for_disconnect(receive))
        try:
            await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not job.done():
                job.cancel()
            await asyncio.gather(job, watcher, return_exceptions=True)
        if not job.cancelled():
            job.result()  # the job's own error (no worker, bad request, ...)
    finally:
        # shielded: the client leaving must not interrupt the settlement
        await asyncio.shield(gateway.close_ticket(ticket, done))
    if done is None:
        raise ClientGone("The client closed the connection before the response.")
    return chunks, done


async def event_stream(gateway: Gateway, ticket: Ticket, shapes: StreamShapes
                       ) -> EventStreamResponse:
    """Wait for the first event (so that errors before it keep their HTTP status): the
    worker's empty chunk when it starts the job, or its first output. Then relay the rest as
    Server-Sent Events; the response's headers go out at once, while the prompt is read."""
    try:
        first = await anext(ticket.stream)
    except BaseException:
        await gateway.close_ticket(ticket, None)
        raise

    async def events() -> AsyncIterator[bytes]:
        opening = shapes.opening()
        if opening:
            yield opening
        event = first
        try:
            while isinstance(event, Chunk):
                data = shapes.chunk(event)
                if data:
                    yield data
                event = await anext(ticket.stream)
        except ApiError as error:
            yield shapes.failure(error)
            return
        # shielded: a client leaving now must not interrupt the settlement
        await asyncio.shield(gateway.close_ticket(ticket, event))
        yield shapes.closing(event, usage_body(ticket))

    async def on_close() -> None:
        await gateway.close_ticket(ticket, None)  # a no-op when the stream ended normally

    return EventStreamResponse(events(), on_close)
