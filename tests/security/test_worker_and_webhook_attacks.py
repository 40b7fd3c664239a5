"""Worker connection and webhook attacks, each performed against a real gateway process:
idle worker connections from one address without limit, oversize and forged strings in a
worker's hello and status, signed model.unavailable events carrying model ids a worker
invented, webhooks aimed into the gateway's own network (SSRF, DNS rebinding), the delivery
log as a port scanner, and webhooks managed with an API key alone.

The workers are the scripted worker (a TEST DOUBLE of the worker node) and raw WebSocket
clients speaking the protocol by hand; webhook receivers are real HTTP servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign
from nexus_app.config import Settings
from nexus_app.protocol import (
    MAX_WORKER_MODELS,
    PROTOCOL_VERSION,
    worker_auth_message,
    worker_url,
)
from tests.support.asgi import free_port, read_body, serving
from tests.support.gateways import Account, auth, make_settings, signed_in_account
from tests.support.processes import GatewayProcess
from tests.support.scripted_worker import ScriptedWorker

StartProcess = Callable[..., GatewayProcess]
MODEL_GRACE_S = 5.0  # how long a model must stay unserved before model.unavailable
CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}


class Receiver:
    """A webhook receiver on loopback that records each delivery's headers and body, and
    answers `status` with a body holding text the gateway must never repeat."""

    LEAK = "internal-db-password-in-an-error-page"

    def __init__(self, status: int = 200) -> None:
        self.port = free_port()
        self.status = status
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append((headers, json.loads(body)))
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"x-internal-banner", self.LEAK.encode())]})
        await send({"type": "http.response.body", "body": self.LEAK.encode()})

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [event for _, event in self.received if event["type"] == kind]

    async def __aenter__(self) -> Receiver:
        self._serving = serving(self, self.port)
        await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(None, None, None)


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(tmp_path / "data", webhook_retry_base_s=0.2, **overrides)


@pytest.fixture
async def http() -> AsyncIterator[Callable[[GatewayProcess], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def client(gateway: GatewayProcess) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(base_url=gateway.url, timeout=30))
        return clients[-1]

    yield client
    for one in clients:
        await one.aclose()


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def closed_reason(ws: websockets.ClientConnection) -> tuple[int, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason


def hello(nonce: str, keypair: Keypair, **fields: Any) -> str:
    """A signed hello frame, written by hand (the client-side models would refuse it)."""
    frame = {"type": "hello", "protocol": PROTOCOL_VERSION, "wallet": str(keypair.pubkey()),
             "signature": sign(keypair, worker_auth_message(nonce)),
             "models": [{"id": "scripted-model"}], "slots": 1, **fields}
    return json.dumps(frame)


# 6. idle worker connections ---------------------------------------------------------------

async def test_worker_connections_per_address_are_capped(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path, worker_connections_per_address=3))
    workers = [await ScriptedWorker(gateway.url).start() for _ in range(3)]  # 3 fresh wallets
    for _ in range(3):  # a 4th wallet, and a 5th...: the address has had its share
        async with websockets.connect(worker_url(gateway.url)) as ws:
            code, reason = await closed_reason(ws)
        assert code == 1008 and "this address already has 3 worker connections" in reason
    stats = (await http(gateway).get("/v1/network/stats")).json()
    assert stats["workers_online"] == 3

    await workers[0].stop()  # a place freed can be taken again
    deadline = time.monotonic() + 10
    while (await http(gateway).get("/v1/network/stats")).json()["workers_online"] != 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    replacement = await ScriptedWorker(gateway.url).start()
    assert replacement.worker_id is not None
    for worker in [*workers[1:], replacement]:
        await worker.stop()
    assert await gateway.audit_ok()


FORGED_HELLOS = [  # (hello fields, what the close reason names)
    ({"hardware": {"note": "x" * 10_000}}, "hardware.note"),
    ({"hardware": {"accelerator": "cuda", "gpus": [{"name": "G" * 10_000}]}}, "gpus.0.name"),
    ({"hardware": {"gpus": [{"name": "gpu", "driver": "9" * 1000}]}}, "gpus.0.driver"),
    ({"models": [{"id": "claim your reward at evil.example"}]}, "models.0.id"),
    ({"models": [{"id": "model\nINFO forged log line"}]}, "models.0.id"),
    ({"models": [{"id": "m" * 65}]}, "models.0.id"),
    ({"models": [{"id": "Upper-Case"}]}, "models.0.id"),
    ({"models": [{"id": "-leading-dash"}]}, "models.0.id"),
    ({"models": [{"id": "ok", "file": "f" * 10_000}]}, "models.0.file"),
    ({"hardware": {"gpus": [{"name": "gpu"}] * 17}}, "hardware.gpus"),
    ({"models": [{"id": f"m{n}"} for n in range(MAX_WORKER_MODELS + 1)]}, "models"),
]


async def test_oversize_and_forged_hello_strings_are_refused(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path))
    for fields, field in FORGED_HELLOS:
        async with websockets.connect(worker_url(gateway.url), max_size=None) as ws:
            challenge = json.loads(await ws.recv())
            await ws.send(hello(challenge["nonce"], Keypair(), **fields))
            code, reason = await closed_reason(ws)
        assert code == 1008 and reason.startswith("invalid frame") and field in reason, (
            field, reason)

    async with websockets.connect(worker_url(gateway.url), max_size=None) as ws:
        challenge = json.loads(await ws.recv())  # a valid hello, then a forged status
        await ws.send(hello(challenge["nonce"], Keypair()))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "status", "hardware": {"note": "x" * 10_000}}))
        code, reason = await closed_reason(ws)
    assert code == 1008 and "hardware.note" in reason
    stats = (await http(gateway).get("/v1/network/stats")).json()
    assert stats["workers_online"] == 0 and stats["models"] == []


# 12. forged model.unavailable ---------------------------------------------------------------

async def customer(gateway: GatewayProcess, credit: int = 100_000) -> Account:
    account = await signed_in_account(gateway.url)
    ledger = await gateway.open_ledger()
    await ledger.grant(account.wallet, credit, "test credit")
    await ledger.close()
    return account


async def subscribe(client: httpx.AsyncClient, account: Account, url: str,
                    events: list[str]) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", headers=auth(account.session),
                                 json={"url": url, "events": events})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_invented_models_send_no_events_and_a_used_one_at_most_once_an_hour(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path, webhook_allow_loopback=True))
    client = http(gateway)
    user = await customer(gateway)
    async with Receiver() as receiver:
        await subscribe(client, user, receiver.url(), ["model.unavailable"])
        invented = [f"urgent-verify-your-wallet-at-evil-example-{n:02d}"
                    for n in range(MAX_WORKER_MODELS)]
        attacker = await ScriptedWorker(gateway.url, models=invented).start()
        await attacker.stop()  # all its models gone at once
        honest = await ScriptedWorker(gateway.url).start()
        chat = await client.post("/v1/chat/completions", json=CHAT, headers=auth(user.api_key))
        assert chat.status_code == 200  # the account uses scripted-model
        await honest.stop()
        await until(lambda: bool(receiver.received), timeout=MODEL_GRACE_S + 10)
        assert [event["data"] for event in receiver.events("model.unavailable")] == [
            {"model": "scripted-model"}]

        again = await ScriptedWorker(gateway.url).start()  # back, and gone again
        await again.stop()
        await asyncio.sleep(MODEL_GRACE_S + 2)
        assert len(receiver.received) == 1  # at most once an hour per model
    assert await gateway.audit_ok()


# 11. webhook SSRF ---------------------------------------------------------------------------

INTERNAL_TARGETS = [
    "https://127.0.0.1/hook", "http://127.0.0.1:8080/hook", "https://127.1/hook",
    "https://10.0.0.5/hook", "https://192.168.1.1/hook", "https://172.16.0.1/hook",
    "https://169.254.169.254/latest/meta-data/", "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook", "https://[fd00::1]/hook", "https://[fe80::1]/hook",
    "https://0.0.0.0/hook", "https://224.0.0.1/hook", "https://100.64.0.1/hook",
    "https://localhost/hook", "https://2130706433/hook",  # names that resolve to loopback
]


async def test_webhooks_to_internal_addresses_are_refused(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path))
    client = http(gateway)
    user = await customer(gateway)
    for url in INTERNAL_TARGETS:
        response = await client.post("/v1/webhooks", headers=auth(user.session),
                                     json={"url": url})
        assert response.status_code == 400, (url, response.text)
        error = response.json()["error"]
        assert (error["param"], error["code"]) == ("url", "invalid_webhook_url"), url
    listed = await client.get("/v1/webhooks", headers=auth(user.session))
    assert listed.json()["data"] == []


async def deliveries(client: httpx.AsyncClient, account: Account,
                     hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                                headers=auth(account.session))
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def test_delivery_checks_the_address_again_and_its_log_leaks_nothing(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    allowed = settings(tmp_path, webhook_allow_loopback=True)
    gateway = gateway_process(allowed)
    user = await customer(gateway)
    async with Receiver(status=503) as receiver:
        client = http(gateway)
        # a host name: resolved and checked, then reached at the checked address with the
        # name in the Host header
        hook = await subscribe(client, user, receiver.url("localhost"), ["key.created"])
        assert (await client.post("/v1/keys", headers=auth(user.session),
                                  json={"name": "one"})).status_code == 200
        await until(lambda: bool(receiver.received))
        headers, _ = receiver.received[0]
        assert headers["host"] == f"localhost:{receiver.port}"
        await until(lambda: len(receiver.received) >= 2)  # 503: retried
        log = await deliveries(client, user, hook)
        assert log[0]["last_status"] == "5xx"
        assert Receiver.LEAK not in json.dumps(log) and "503" not in json.dumps(log)

        # the operator turns loopback off: the same hook now resolves to a refused address
        # at delivery (what DNS rebinding would do), and nothing reaches the receiver
        gateway.process.terminate()
        gateway.process.wait(15)
        gateway = gateway_process(allowed.model_copy(update={"webhook_allow_loopback": False}))
        client = http(gateway)
        seen = len(receiver.received)
        assert (await client.post("/v1/keys", headers=auth(user.session),
                                  json={"name": "two"})).status_code == 200

        async def blocked() -> bool:
            log = await deliveries(client, user, hook)
            return all(d["last_status"] == "blocked" and d["attempts"] >= 1 for d in log)

        deadline = time.monotonic() + 15
        while not await blocked():
            assert time.monotonic() < deadline, await deliveries(client, user, hook)
            await asyncio.sleep(0.1)
        assert len(receiver.received) == seen
    assert await gateway.audit_ok()


async def test_a_closed_port_shows_as_refused_and_nothing_more(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path, webhook_allow_loopback=True))
    client = http(gateway)
    user = await customer(gateway)
    hook = await subscribe(client, user, f"http://127.0.0.1:{free_port()}/hook",
                           ["key.created"])
    assert (await client.post("/v1/keys", headers=auth(user.session),
                              json={"name": "k"})).status_code == 200
    deadline = time.monotonic() + 15
    while not (log := await deliveries(client, user, hook))[0]["attempts"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert (log[0]["last_status"], log[0]["last_error"]) == (
        "refused", "the connection to the receiver failed")
    assert "Errno" not in json.dumps(log) and "Connect" not in json.dumps(log)


# 12. webhook management needs the session -------------------------------------------------

async def test_an_api_key_alone_cannot_manage_webhooks(
    tmp_path: Path, gateway_process: StartProcess, http: Any,
) -> None:
    gateway = gateway_process(settings(tmp_path))
    client = http(gateway)
    user = await customer(gateway)
    hook = await subscribe(client, user, "https://example.com/hook", ["key.created"])
    for method, path, body in [
        ("POST", "/v1/webhooks", {"url": "https://example.com/stolen"}),
        ("GET", "/v1/webhooks", None),
        ("GET", f"/v1/webhooks/{hook['id']}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{hook['id']}", None),
    ]:
        response = await client.request(method, path, json=body, headers=auth(user.api_key))
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "invalid_session"
    listed = await client.get("/v1/webhooks", headers=auth(user.session))
    assert [h["id"] for h in listed.json()["data"]] == [hook["id"]]
