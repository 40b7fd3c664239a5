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
from collections import Counter

from starlette.websockets import WebSocket, WebSocketDisconnect

from nexus_app.chain.wallet import verify
from nexus_app.gateway.coordinator import Coordinator, UnknownJob, WorkerLink
from nexus_app.gateway.middleware import client_address
from nexus_app.gateway.store import Store
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
HANDSHAKES_PER_ADDRESS = 16  # worker connections one address may have waiting for a hello
POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009


class HandshakeGate:
    """Bounds the worker connections of one client address that have not said hello yet:
    each holds a task for up to HELLO_TIMEOUT_S, so a flood of them must not pile up."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._pending: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        if self._pending[address] >= self.per_address:
            return False
        self._pending[address] += 1
        return True

    def leave(self, address: str) -> None:
        self._pending[address] -= 1
        if not self._pending[address]:
            del self._pending[address]


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
    ws: WebSocket, coordinator: Coordinator, store: Store, gate: HandshakeGate, *,
    max_frame_bytes: int, connections_per_wallet: int,
) -> None:
    """Run one worker connection until it closes."""
    address = client_address(ws.scope)
    if not gate.admit(address):  # refused before the upgrade: an HTTP 403
        await _close(ws, POLICY_VIOLATION, "too many worker handshakes from this address")
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
        link = WorkerLink(
            wallet=hello.wallet,
            models={card.id: card for card in hello.models},
            slots=hello.slots,
            hardware=hello.hardware,
            version=hello.version,
            send=ws.send_text,
        )
        coordinator.register(link)
        await ws.send_text(encode(Ready(worker_id=link.id)))
        earnings = await store.worker_earnings(link.wallet)
        await ws.send_text(encode(Earnings(earned=earnings.earned, paid=earnings.paid)))
        while (text := await _receive_text(ws, max_frame_bytes)) is not None:
            try:
                frame = parse_worker_frame(text)
            except ProtocolError as exc:
                raise _Close(POLICY_VIOLATION, str(exc)) from None
            if isinstance(frame, Hello):
                raise _Close(POLICY_VIOLATION, "hello sent twice")
            try:
                coordinator.on_frame(link, frame)
            except UnknownJob:
                raise _Close(
                    POLICY_VIOLATION, "frame for a job this worker was not given"
                ) from None
    except _Close as close:
        log.warning("closing worker connection: %s", close.reason)
        await _close(ws, close.code, close.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if link is not None:
            coordinator.unregister(link)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await ws.close(code, reason[:120])
