"""Pure-ASGI middleware run on every HTTP request: request id, body size limit, per-address
limit for anonymous calls (no credential, or one that is not a live key or session), the
`X-RateLimit-*` headers, and a last-resort 500 that never carries a stack trace (nor logs the
exception's message, which may hold user text)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_app.gateway.errors import ApiError, PayloadTooLarge, RateLimited
from nexus_app.gateway.http.errors import error_response, ledger_down
from nexus_app.gateway.ledger.store import LedgerUnavailable
from nexus_app.gateway.ratelimit import Limiter, Quota, address_key
from nexus_app.ids import new_id

log = logging.getLogger(__name__)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def limit_address(scope: Scope) -> str:
    """The client's address as per-address limits count it (see `address_key`)."""
    return address_key(client_address(scope))


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """A header's first value, the one Starlette's `request.headers.get` reads."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def request_context(scope: Scope) -> dict[str, Any]:
    """Per-request values shared between this middleware and the endpoints."""
    return scope.setdefault("nexus", {})  # type: ignore[no-any-return]


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Limiter,
        ip_rpm: int,
        max_body_bytes: int,
        on_status: Callable[[int], None],
        recognise: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.recognise = recognise
        self.on_status = on_status
        self.limiter = limiter
        self.ip_rpm = ip_rpm
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        context = request_context(scope)
        context["request_id"] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.on_status(message["status"])
                quota: Quota | None = context.get("quota")
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if quota is not None:
                    headers.extend(quota.headers())
                message["headers"] = headers
            await send(message)

        try:
            headers = dict(scope["headers"])
            early = await self._admit(scope, headers, context)
            if early is not None:
                await early(scope, receive, send_with_headers)
                return
            if b"content-length" not in headers and b"chunked" in headers.get(
                b"transfer-encoding", b""
            ):
                buffered = await self._buffer_unsized_body(receive)
                if buffered is None:
                    await self._too_large(scope, receive, send_with_headers)
                    return
                receive = buffered
            await self.app(scope, receive, send_with_headers)
        except LedgerUnavailable:  # raised before the app's handlers (authentication)
            if not started:
                await error_response(ledger_down())(scope, receive, send_with_headers)
        except Exception as exc:  # the app failed: answer 500 if nothing was sent yet
            log.error(
                "internal error %s on %s %s\n%s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if not started:
                await error_response(ApiError("Internal server error."))(
                    scope, receive, send_with_headers
                )

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"Request body exceeds {self.max_body_bytes} bytes.")
        await error_response(error)(scope, receive, send)

    async def _admit(self, scope: Scope, headers: dict[bytes, bytes],
                     context: dict[str, Any]) -> Any:
        """An early error response, or None to let the request through."""
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return self._too_large
        if not await self._recognised(scope):
            context["address_counted"] = True
            verdict = await self.limiter.hit("ip:" + limit_address(scope), self.ip_rpm)
            context["quota"] = verdict.quota
            if not verdict.allowed:
                return error_response(
                    RateLimited("Too many requests from this address.",
                                retry_after=verdict.retry_after)
                )
        return None

    async def _recognised(self, scope: Scope) -> bool:
        """Whether the request carries a live credential (its own limits then apply)."""
        authorization = first_header(scope, b"authorization")
        if authorization is None or self.recognise is None:
            return False
        return await self.recognise(authorization.decode("latin-1"))

    async def _buffer_unsized_body(self, receive: Receive) -> Receive | None:
        """Read a body sent without Content-Length up to the limit; None when it is larger."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay_receive() -> Message:
            return replay.pop() if replay else await receive()

        return replay_receive
