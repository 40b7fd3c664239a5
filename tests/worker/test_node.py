"""The worker node's link against a gateway that misbehaves: it keeps running and retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import websockets
from solders.keypair import Keypair

from nexus_app.protocol import Ready, encode
from nexus_app.worker.node import WorkerNode, backoff_delay
from tests.support.gateways import make_settings


async def test_a_gateway_that_skips_the_challenge_is_retried_not_fatal(tmp_path: Path) -> None:
    connections = 0

    async def bad_gateway(ws: websockets.ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.send(encode(Ready(worker_id="wkr_x")))  # a ready before any challenge
        await ws.wait_closed()

    async with websockets.serve(bad_gateway, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = make_settings(tmp_path, gateway_url=f"http://127.0.0.1:{port}",
                                 reconnect_max_s=0.2)
        node = WorkerNode(settings, [], Keypair())
        running = asyncio.create_task(node.run())
        for _ in range(100):
            if connections >= 3:
                break
            await asyncio.sleep(0.05)
        assert connections >= 3 and not running.done()
        assert "did not open with a challenge" in node.status.last_error
        await node.stop()
        await asyncio.wait_for(running, 5)
    assert node.status.state == "stopped"


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    delays = [backoff_delay(attempt, cap=30) for attempt in range(12)]
    assert 0.25 <= delays[0] <= 0.5 and 2 <= delays[3] <= 4
    assert all(15 <= d <= 30 for d in delays[8:])
