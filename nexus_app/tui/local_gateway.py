"""The local network of the terminal app: the gateway, its ledger and the local Solana chain,
served by uvicorn in a thread of this process, on loopback.

A gateway already listening on the configured port is used only when it proves that it
serves this data dir (see nexus_app.gateway.api.identity); anything else there (another user's
process, a stale server) is never trusted with the wallet's sign-in, prompts or deposits:
the app then serves its own gateway on a free port."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING

import httpx

from nexus_app.config import Settings
from nexus_app.gateway.api.identity import PROOF_PATH, identity_secret, proof

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


def is_own_gateway(settings: Settings, host: str, port: int) -> bool:
    """Whether the server on `host:port` proves it is the gateway of this data dir: it
    answers a fresh nonce with the HMAC under the data dir's secret, bound to `port`."""
    nonce = secrets.token_urlsafe(24)
    expected = proof(identity_secret(settings.data_dir), nonce, port)
    try:
        response = httpx.get(f"http://{host}:{port}{PROOF_PATH}", params={"nonce": nonce},
                             timeout=2)
        answer = response.json().get("proof") if response.is_success else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return isinstance(answer, str) and hmac.compare_digest(answer, expected)


class LocalGateway:
    """Start with `start()` (blocking: call it from a thread), stop with `stop()`.

    When the configured port already serves this data dir's gateway (say `nexus-app
    --gateway` in another terminal with the same data dir, which it proves) that one is used
    and nothing is started; when it is taken by anything else, a free port is used instead.
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
            if is_own_gateway(self.settings, host, port):
                self.url = f"http://{host}:{port}"
                self.note = f"using this data dir's gateway already running at {self.url}"
                return self.url
            port = _free_port(host)
            self.note = (f"port {self.settings.port} is taken by something that is not this "
                         f"data dir's gateway (not trusted); the local gateway uses {port}")
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
