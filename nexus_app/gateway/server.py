"""Run the gateway with uvicorn (`nexus-app --gateway`)."""

from __future__ import annotations

import uvicorn

from nexus_app.config import Settings
from nexus_app.file_modes import private_dir, require_private
from nexus_app.gateway.app import create_app
from nexus_app.gateway.workers.memory import return_large_blocks
from nexus_app.logsafe import configure_logging, guard_handlers, quiet_libraries


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    """uvicorn's settings for the gateway; its own log handlers (which it installs here) get
    the log hygiene filter too."""
    config = uvicorn.Config(
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
    guard_handlers("uvicorn", "uvicorn.access")
    return config


def run_gateway(settings: Settings) -> None:
    """Serve until stopped. Raises `InsecureFile` before anything starts if the treasury
    keypair can be read by other users."""
    configure_logging(settings.log_level)
    return_large_blocks()  # idle worker connections must not keep their past frames' memory
    require_private(settings.treasury_path, "treasury keypair")
    private_dir(settings.data_dir)
    config = uvicorn_config(settings)
    quiet_libraries()  # again: uvicorn's logging set-up reset uvicorn.access
    uvicorn.Server(config).run()
