"""What the routes share: the gateway serving a request (set on the app by `create_app`) and
the caller its bearer credential names, as FastAPI dependencies (`GatewayDep`,
`ApiKeyCaller`, `SessionCaller`, `KeyOrSessionCaller`).

The hot OpenAI routes are plain Starlette routes that skip FastAPI's request handling; they
call `api_key_caller` themselves. A credential that does not qualify is a 401 (and counts as
a failed attempt of the client's address), raised before the route body runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection, Request

from nexus_app.gateway.http.auth import Caller
from nexus_app.gateway.service import Gateway


def gateway_of(request: HTTPConnection) -> Gateway:
    """The gateway serving `request`."""
    return request.app.state.gateway  # type: ignore[no-any-return]


async def _gateway(request: Request) -> Gateway:
    # async: FastAPI would run a plain function in its thread pool
    return gateway_of(request)


async def api_key_caller(request: Request) -> Caller:
    """The caller of an inference request: a valid, unrevoked API key within its limits."""
    auth = gateway_of(request).auth
    return await auth.api_key(request.scope, request.headers.get("authorization"))


async def _session_caller(request: Request) -> Caller:
    auth = gateway_of(request).auth
    return await auth.session(request.scope, request.headers.get("authorization"))


async def _key_or_session_caller(request: Request) -> Caller:
    auth = gateway_of(request).auth
    return await auth.key_or_session(request.scope, request.headers.get("authorization"))


GatewayDep = Annotated[Gateway, Depends(_gateway)]
ApiKeyCaller = Annotated[Caller, Depends(api_key_caller)]
# a wallet sign-in session: managing keys, webhooks and payouts
SessionCaller = Annotated[Caller, Depends(_session_caller)]
# an API key or a session: reading the account, deposits
KeyOrSessionCaller = Annotated[Caller, Depends(_key_or_session_caller)]
