"""Run the headless worker node (`nexus-app --worker`) until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal

from nexus_app.chain.wallet import load_or_create_keypair
from nexus_app.config import Settings
from nexus_app.logsafe import configure_logging
from nexus_app.worker.models import resolve
from nexus_app.worker.node import WorkerNode

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Load the models, join the gateway, and drain the jobs in flight on SIGTERM/SIGINT."""
    models = resolve(settings.models, settings.models_path)
    keypair = load_or_create_keypair(settings.wallet_path)
    node = WorkerNode(settings, models, keypair)
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def on_signal(name: str) -> None:
        log.info("%s: stopping after the jobs in flight", name)
        stopping.add(asyncio.create_task(node.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        await node.start()
        log.info("payout wallet %s", node.wallet)
        await node.run()
        if node.out_of_service:
            raise SystemExit(f"worker stopped: {node.status.last_error}")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        node.close()


def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))
