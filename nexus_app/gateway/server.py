"""Run the gateway with uvicorn (`nexus-app --gateway`)."""

from __future__ import annotations

import logging

import uvicorn

from nexus_app.config import Settings
from nexus_app.gateway.app import create_app


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # paths and statuses only would be fine, but they cost throughput
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=False,  # small JSON frames: compression costs more than it saves
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=10,
        server_header=False,
    )


def run_gateway(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.Server(uvicorn_config(settings)).run()
