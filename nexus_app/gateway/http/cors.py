"""Cross-origin requests from browsers (CORS), for the origins the operator allows
(`cors_allowed_origins`; off when empty).

A pure-ASGI middleware outside every other one: it answers preflights itself (no API key is
needed and no rate limit counted, since browsers send neither on a preflight) and adds
`Access-Control-Allow-Origin` and `Access-Control-Expose-Headers` to every response to an
allowed origin, errors included. Requests from other origins get no CORS header at all, so
browsers keep them from reading the response.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nexus_app.ids import new_id

ANY_ORIGIN = "*"
ALLOWED_METHODS = b"GET, POST, DELETE, OPTIONS"
MAX_AGE_S = b"7200"  # browsers cache a preflight this long (Chromium's own ceiling)
# headers a browser client may send: ours, and those the official OpenAI SDKs add
ALLOWED_HEADERS = frozenset({
    "authorization", "content-type", "accept", "accept-language", "idempotency-key",
    "openai-organization", "openai-project", "openai-beta", "user-agent", "x-request-id",
})
ALLOWED_HEADER_PREFIXES = ("x-stainless-",)
EXPOSED_HEADERS = (b"X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, "
                   b"Retry-After")


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


class CorsMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_origins: Iterable[str]) -> None:
        self.app = app
        origins = {normalize_origin(origin) for origin in allowed_origins}
        self.any_origin = ANY_ORIGIN in origins
        self.origins = origins - {ANY_ORIGIN}

    def _allowed(self, origin: str) -> bool:
        return self.any_origin or normalize_origin(origin) in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not origin or not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
            return
        cors = [*self._origin_headers(origin),
                (b"access-control-expose-headers", EXPOSED_HEADERS)]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")),
                (b"vary", b"Origin")]

    async def _preflight(self, origin: str, headers: dict[bytes, bytes], send: Send) -> None:
        """204 with the methods and headers a browser may use, cached for MAX_AGE_S."""
        requested = headers.get(b"access-control-request-headers", b"").decode("latin-1")
        allowed = [name for name in (part.strip().lower() for part in requested.split(","))
                   if name in ALLOWED_HEADERS or name.startswith(ALLOWED_HEADER_PREFIXES)]
        response_headers = [
            *self._origin_headers(origin),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers",
             ", ".join(allowed or sorted(ALLOWED_HEADERS)).encode("latin-1")),
            (b"access-control-max-age", MAX_AGE_S),
            (b"x-request-id", new_id("req").encode()),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": response_headers})
        await send({"type": "http.response.body", "body": b""})
