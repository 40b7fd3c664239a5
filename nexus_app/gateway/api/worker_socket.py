"""The gateway's side of one worker WebSocket (`GET /v1/workers/connect`).

Handshake: send `challenge`, expect a `hello` whose signature over the nonce proves the
worker owns its payout wallet, answer `ready`. Then relay frames to the coordinator. Any
malformed, oversize or out-of-protocol frame closes this connection only, with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from nexus_app.chain.wallet import verify
from nexus_app.gateway.http.middleware import client_address
from nexus_app.gateway.ledger.store import EarningsStore
from nexus_app.gateway.workers.admission import FrameRate, HandshakeGate
from nexus_app.gateway.workers.coordinator import Coordinator, Overrun, UnknownJob, WorkerLink
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Challenge,
    Earnings,
    Hello,
    ProtocolError,
    Ready,
    encode,
    parse_worker_frame,
    worker_auth_message,
)

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 15.0
POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def _receive_text(ws: WebSocket, max_bytes: int, timeout: float | None = None) -> str | None:
    """The next text frame, or None when the worker disconnected."""
    message = await asyncio.wait_for(ws.receive(), timeout)
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        raise _Close(UNSUPPORTED_DATA, "frames must be JSON text")
    if len(text) > max_bytes:
        raise _Close(MESSAGE_TOO_BIG, f"frame larger than {max_bytes} bytes")
    return str(text)


async def _handshake(ws: WebSocket, max_bytes: int) -> Hello | None:
    nonce = secrets.token_urlsafe(24)
    await ws.send_text(encode(Challenge(nonce=nonce)))
    try:
        text = await _receive_text(ws, max_bytes, HELLO_TIMEOUT_S)
    except TimeoutError:
        raise _Close(POLICY_VIOLATION, "no hello before the timeout") from None
    if text is None:
        return None
    try:
        hello = parse_worker_frame(text)
    except ProtocolError as exc:
        raise _Close(POLICY_VIOLATION, str(exc)) from None
    if not isinstance(hello, Hello):
        raise _Close(POLICY_VIOLATION, "expected a hello frame")
    if hello.protocol != PROTOCOL_VERSION:
        raise _Close(POLICY_VIOLATION, f"unsupported protocol {hello.protocol}, "
                                       f"this gateway speaks {PROTOCOL_VERSION}")
    if not verify(hello.wallet, worker_auth_message(nonce), hello.signature):
        raise _Close(POLICY_VIOLATION, "the signature does not match the wallet")
    return hello


async def serve_worker(
    ws: WebSocket, coordinator: Coordinator, store: EarningsStore, gate: HandshakeGate, *,
    max_frame_bytes: int, connections_per_wallet: int, frames_per_s: int = 10_000,
) -> None:
    """Run one worker connection until it closes."""
    address = client_address(ws.scope)
    if not await _admitted(ws, gate, address):
        return
    link: WorkerLink | None = None
    try:
        try:
            await ws.accept()
            hello = await _handshake(ws, max_frame_bytes)
        finally:
            gate.leave(address)
        if hello is None:
            return
        if len(coordinator.workers_for(hello.wallet)) >= connections_per_wallet:
            raise _Close(POLICY_VIOLATION, f"this wallet already has {connections_per_wallet} "
                                           "worker connections, the most allowed")
        link = _new_link(hello, ws.send_text)
        del hello  # what the link needs is kept, and the rest freed (see _new_link)
        coordinator.register(link)
        await ws.send_text(encode(Ready(worker_id=link.id)))
        earnings = await store.worker_earnings(link.wallet)
        await ws.send_text(encode(Earnings(earned=earnings.earned, paid=earnings.paid)))
        await _relay_frames(ws, coordinator, link, max_frame_bytes, FrameRate(frames_per_s))
    except _Close as close:
        log.warning("closing worker connection: %s", close.reason)
        await _close(ws, close.code, close.reason)
    except WebSocketDisconnect:
        pass
    finally:
        gate.disconnect(address)
        if link is not None:
            coordinator.unregister(link)


def _new_link(hello: Hello, send: Callable[[str], Awaitable[None]]) -> WorkerLink:
    """The registry's record of a worker that said hello: what the gateway uses of it, and no
    more, since it lives as long as the connection (a card's file name is not kept)."""
    for card in hello.models:
        card.file = ""  # the cards are this hello's own: cleared, not copied
    return WorkerLink(
        wallet=hello.wallet,
        models={card.id: card for card in hello.models},
        slots=hello.slots,
        hardware=hello.hardware,
        version=hello.version,
        send=send,
    )


async def _admitted(ws: WebSocket, gate: HandshakeGate, address: str) -> bool:
    """Count the connection against its address's limits, or refuse it: past the total, with
    a close reason the worker's operator can read; past the handshakes still waiting for a
    hello (a flood), before the upgrade (an HTTP 403)."""
    if not gate.connect(address):
        limit = gate.connections_per_address
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await ws.accept()
        await _close(ws, POLICY_VIOLATION, f"this address already has {limit} worker "
                                           "connections, the most allowed")
        return False
    if not gate.admit(address):
        gate.disconnect(address)
        await _close(ws, POLICY_VIOLATION, "too many worker handshakes from this address")
        return False
    return True


async def _relay_frames(ws: WebSocket, coordinator: Coordinator, link: WorkerLink,
                        max_frame_bytes: int, rate: FrameRate) -> None:
    """Hand the worker's frames to the coordinator until it disconnects. Too many frames a
    second, or more output than a job may relay, benches its wallet and closes it."""
    while True:
        text = await _receive_text(ws, max_frame_bytes)
        if text is None:
            return
        _relay_frame(coordinator, link, text, rate)
        del text  # an idle worker must not keep its last frame (up to max_frame_bytes) alive


def _relay_frame(coordinator: Coordinator, link: WorkerLink, text: str,
                 rate: FrameRate) -> None:
    if not rate.allow():
        coordinator.misbehaved(link, f"more than {rate.rate} frames a second")
        raise _Close(POLICY_VIOLATION, f"more than {rate.rate} frames a second")
    try:
        frame = parse_worker_frame(text)
    except ProtocolError as exc:
        raise _Close(POLICY_VIOLATION, str(exc)) from None
    if isinstance(frame, Hello):
        raise _Close(POLICY_VIOLATION, "hello sent twice")
    try:
        coordinator.on_frame(link, frame, len(text))
    except UnknownJob:
        raise _Close(POLICY_VIOLATION, "frame for a job this worker was not given") from None
    except Overrun as overrun:
        raise _Close(POLICY_VIOLATION, f"job output over its limit: {overrun}") from None


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.close(code, reason[:120])
