"""The local network of the terminal app: the gateway, its ledger and the local Solana chain,
served by uvicorn in a thread of this process, on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx

from nexus_app.client.http import NEXUS_PROBE_PATH, is_nexus_answer
from nexus_app.config import Settings

if TYPE_CHECKING:
    import uvicorn


class LocalGatewayError(Exception):
    """The in-process gateway could not start."""


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _is_nexus_gateway(url: str) -> bool:
    try:
        return is_nexus_answer(httpx.get(f"{url}{NEXUS_PROBE_PATH}", timeout=2))
    except httpx.HTTPError:
        return False


class LocalGateway:
    """Start with `start()` (blocking: call it from a thread), stop with `stop()`.

    When the configured port already serves a NEXUS gateway (say `nexus-app --gateway` in
    another terminal with the same data dir) that one is used and nothing is started; when it
    is taken by something else, a free port is used instead.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self.note = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Serve the gateway and return its URL once it answers."""
        import uvicorn

        from nexus_app.gateway.server import uvicorn_config

        host, port = "127.0.0.1", self.settings.port
        if not _port_is_free(host, port):
            if _is_nexus_gateway(f"http://{host}:{port}"):
                self.url = f"http://{host}:{port}"
                self.note = f"using the gateway already running at {self.url}"
                return self.url
            port = _free_port(host)
            self.note = f"port {self.settings.port} is taken; the local gateway uses {port}"
        settings = self.settings.model_copy(update={"host": host, "port": port,
                                                    "log_level": "error",
                                                    "webhook_allow_loopback": True})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        config = uvicorn_config(settings)
        config.lifespan = "on"
        server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                asyncio.run(server.serve())
            except BaseException as exc:  # reported to start()'s caller below
                failure.append(exc)

        self._server = server
        self._thread = threading.Thread(target=serve, name="nexus-local-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if failure or not self._thread.is_alive():
                reason = f": {failure[0]}" if failure else ""
                raise LocalGatewayError(f"the local gateway did not start{reason}")
            if time.monotonic() > deadline:
                raise LocalGatewayError("the local gateway did not start in time")
            time.sleep(0.02)
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        """Finish the requests in flight (bounded) and stop serving."""
        if self._thread is None or self._server is None:
            return
        self._server.should_exit = True
        self._thread.join(15)
        self._thread = None
