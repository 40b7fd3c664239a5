"""The gateway's ASGI application: routes, error handling, middleware and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket

from nexus_app import __version__
from nexus_app.config import Settings
from nexus_app.gateway.api import (
    account,
    deposits,
    earnings,
    identity,
    network,
    text_generate,
    webhooks,
)
from nexus_app.gateway.api.openai import chat, completions, responses, responses_stored
from nexus_app.gateway.api.worker_socket import serve_worker
from nexus_app.gateway.http.cors import CorsMiddleware
from nexus_app.gateway.http.errors import install_error_handlers
from nexus_app.gateway.http.middleware import GatewayMiddleware
from nexus_app.gateway.http.openapi import install_openapi
from nexus_app.gateway.ledger.store import Store
from nexus_app.gateway.service import Gateway, ledger_store
from nexus_app.gateway.workers.admission import HANDSHAKES_PER_ADDRESS, HandshakeGate
from nexus_app.protocol import WORKER_PATH


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    gateway = Gateway(settings, store or ledger_store(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="NEXUS gateway",
        version=__version__,
        description="OpenAI-compatible API of the NEXUS network, billed in $NEXUS credit.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    install_openapi(app)
    app.router.routes.extend([*chat.routes, *completions.routes, *responses.routes,
                              *text_generate.routes])
    for router in (account.router, deposits.router, earnings.router, network.router,
                   webhooks.router, identity.router, responses_stored.router,
                   text_generate.router):
        app.include_router(router)

    handshakes = HandshakeGate(HANDSHAKES_PER_ADDRESS,
                               settings.worker_connections_per_address)

    @app.websocket(WORKER_PATH)
    async def workers_connect(ws: WebSocket) -> None:
        """Worker protocol (see nexus_app.protocol)."""
        await serve_worker(ws, gateway.coordinator, gateway.store, handshakes,
                           max_frame_bytes=settings.max_frame_bytes,
                           connections_per_wallet=settings.worker_connections_per_wallet,
                           frames_per_s=settings.worker_frames_per_s)

    app.add_middleware(
        GatewayMiddleware,
        limiter=gateway.limiter,
        ip_rpm=settings.ip_rate_limit_rpm,
        max_body_bytes=settings.max_body_bytes,
        on_status=gateway.metrics.count_response,
        recognise=gateway.auth.recognises,
    )
    if settings.cors_allowed_origins:  # outermost: preflights skip the rate limit
        app.add_middleware(CorsMiddleware, allowed_origins=settings.cors_allowed_origins)
    return app
