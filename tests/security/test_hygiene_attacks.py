"""Deposits and hygiene attacks, each performed against a real gateway process: a flood of
free deposit intents, secrets a gateway could write to its log, log lines forged by a
worker's strings, and files other users of the machine could read.

The Solana cluster is `tests/support/solana_rpc_double.py` (a TEST DOUBLE: no cluster is reachable
here); the workers are the scripted worker (a TEST DOUBLE of the worker node) and a raw
WebSocket client speaking the protocol by hand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from solders.keypair import Keypair
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nexus_app.chain.deposit_tx import build_deposit
from nexus_app.chain.wallet import sign
from nexus_app.client.gateway import GatewayClient
from nexus_app.config import Settings
from nexus_app.protocol import PROTOCOL_VERSION, worker_auth_message, worker_url
from tests.support.asgi import free_port, serving
from tests.support.gateways import ROOT, auth, make_settings, signed_in_account
from tests.support.processes import GatewayProcess, env_for
from tests.support.scripted_worker import ScriptedWorker
from tests.support.solana_rpc_double import RpcDouble, rpc_double

MINT = Keypair().pubkey()
NEXUS = 1_000_000
FORGED = "2026-01-01 INFO forged line"
EVIL = f"x\n{FORGED}\r\x1b[2J\u2028{FORGED}"
StartProcess = Callable[..., GatewayProcess]


@pytest.fixture
async def double() -> AsyncIterator[RpcDouble]:
    async with rpc_double() as running:
        yield running


def treasury_file(folder: Path, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "treasury-key.json"
    path.write_text(json.dumps(list(bytes(Keypair()))))
    path.chmod(mode)
    return path


def rpc_gateway_settings(tmp_path: Path, rpc_url: str, **overrides: Any) -> Settings:
    return make_settings(tmp_path / "data", chain="rpc", rpc_url=rpc_url, mint=str(MINT),
                         treasury_keypair=treasury_file(tmp_path / "keys"), **overrides)


async def start(gateway_process: StartProcess, settings: Settings) -> GatewayProcess:
    """The gateway process, started off the event loop (the RPC double answers on it)."""
    return await asyncio.to_thread(gateway_process, settings)


# 8. deposit-intent flood --------------------------------------------------------------------

async def test_an_intent_flood_is_capped_and_does_not_multiply_chain_calls(
    double: RpcDouble, tmp_path: Path, gateway_process: StartProcess,
) -> None:
    running = await start(gateway_process, rpc_gateway_settings(
        tmp_path, double.url, chain_poll_interval_s=0.1))
    accounts = [await signed_in_account(running.url) for _ in range(6)]
    payer = GatewayClient(running.url, token=accounts[0].session)
    paid_intent = await payer.deposit_intent("1")  # the one deposit really made below
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        answers = {account.wallet: [
            await http.get("/v1/deposits/intent", params={"amount": "1"},
                           headers=auth(account.api_key)) for _ in range(12)
        ] for account in accounts}
    accepted = [sum(a.status_code == 200 for a in mine) for mine in answers.values()]
    assert accepted == [9, 10, 10, 10, 10, 10]  # 10 open intents per account, then 429s
    refused = [a for mine in answers.values() for a in mine if a.status_code != 200]
    assert {a.status_code for a in refused} == {429}
    assert refused[0].json()["error"]["code"] == "too_many_deposit_intents"
    assert 3500 <= int(refused[0].headers["Retry-After"]) <= 3600

    # 60 open intents: the watcher asks the chain once a round, not once per open intent
    await asyncio.sleep(0.5)
    first = len(double.calls)
    await asyncio.sleep(2)
    window = double.calls[first:]
    assert 3 <= len(window) <= 2 / 0.1 + 5, window  # ~20 rounds, not 60 calls each
    assert set(window) == {"getSignaturesForAddress"}

    # a deposit whose client never posts it is credited once, its transaction read once
    tx = build_deposit(accounts[0].keypair, paid_intent)
    double.sendTransaction(base64.b64encode(bytes(tx)).decode(), {"encoding": "base64"})
    for _ in range(100):
        if (await payer.balance()).balance:
            break
        await asyncio.sleep(0.05)
    assert (await payer.balance()).balance == NEXUS
    assert double.calls.count("getTransaction") == 1
    again = await payer.submit_deposit(signature=str(tx.signatures[0]))
    assert again.already_credited and again.balance == NEXUS
    await payer.aclose()
    assert await running.audit_ok()


# 13. secrets in logs -----------------------------------------------------------------------

class WebhookReceiver:
    """An HTTP endpoint on loopback that records the webhook deliveries it gets."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[str] = []

    async def hook(self, request: Request) -> Response:
        self.received.append(str(request.url))
        return Response(status_code=204)

    async def __aenter__(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self._serving = serving(app, self.port)
        await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._serving.__aexit__(None, None, None)


async def test_rpc_api_key_and_webhook_secrets_never_reach_the_log(
    double: RpcDouble, tmp_path: Path, gateway_process: StartProcess,
) -> None:
    rpc_url = f"http://nexus:RPC-PASSWORD@127.0.0.1:{double.port}/?api-key=RPC-API-KEY"
    running = await start(gateway_process, rpc_gateway_settings(
        tmp_path, rpc_url, log_level="info", chain_poll_interval_s=0.1,
        webhook_allow_loopback=True))
    account = await signed_in_account(running.url)
    async with WebhookReceiver() as receiver, httpx.AsyncClient(
        base_url=running.url, timeout=30, headers=auth(account.session),
    ) as http:
        hook = await http.post("/v1/webhooks", json={
            "url": f"http://127.0.0.1:{receiver.port}/hook?token=HOOK-SECRET",
            "events": ["key.created"]})
        assert hook.status_code == 200, hook.text
        assert (await http.post("/v1/keys", json={"name": "k"})).status_code == 200
        for _ in range(200):  # the delivery goes out within a round of webhook delivery
            if receiver.received:
                break
            await asyncio.sleep(0.05)
    assert receiver.received and "HOOK-SECRET" in receiver.received[0]
    assert "getSignaturesForAddress" in double.calls  # the RPC URL was used, key and all

    log = running.log_path.read_text()
    assert f"127.0.0.1:{double.port}" in log and "[redacted]" in log  # the start-up line
    for secret in ("RPC-PASSWORD", "RPC-API-KEY", "HOOK-SECRET"):
        assert secret not in log, log


# 14. log injection ------------------------------------------------------------------------

async def raw_worker(url: str, models: list[dict[str, Any]], frames: list[dict[str, Any]],
                     keypair: Keypair | None = None) -> None:
    """A worker speaking the protocol by hand: hello with `models`, then `frames`."""
    keypair = keypair or Keypair()
    async with websockets.connect(worker_url(url), max_size=None) as ws:
        challenge = json.loads(await ws.recv())
        await ws.send(json.dumps({
            "type": "hello", "protocol": PROTOCOL_VERSION, "wallet": str(keypair.pubkey()),
            "signature": sign(keypair, worker_auth_message(challenge["nonce"])),
            "models": models, "slots": 1, "version": EVIL[:64],
        }))
        try:
            assert json.loads(await ws.recv())["type"] == "ready"
        except websockets.ConnectionClosed:
            return  # the hello was refused
        for frame in frames:
            await ws.send(json.dumps(frame))
        await asyncio.sleep(0.2)


async def test_worker_strings_cannot_forge_log_lines_or_drive_the_terminal(
    tmp_path: Path, gateway_process: StartProcess,
) -> None:
    running = await start(gateway_process, make_settings(tmp_path / "data", log_level="info"))
    await raw_worker(running.url, [{"id": EVIL}], [])  # a model id worded as log lines
    await raw_worker(running.url, [{"id": "scripted-model"}], [
        {"type": "error", "code": EVIL, "message": EVIL},
        {"type": "error", "code": "A" * 200_000},
    ])
    worker = await ScriptedWorker(running.url, fail_with=EVIL).start()
    _, key = await running.funded_key(10_000)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        chat = await http.post("/v1/chat/completions", headers=auth(key), json={
            "model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code >= 400 and "\x1b" not in chat.text
    await worker.stop()
    deadline = time.monotonic() + 10
    while "AAAA" not in running.log_path.read_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    raw = running.log_path.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw
    log = raw.decode()
    assert "\\n" + FORGED in log  # the worker's text reached the log, escaped
    lines = log.splitlines()  # splits at \u2028 and the other line breaks too
    assert not [line for line in lines if line.startswith(FORGED)], log
    assert max(len(line) for line in lines) < 5_000  # 200,000 characters were cut
    assert await running.audit_ok()


# 15. file modes ---------------------------------------------------------------------------

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


SECRET_FILES = ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm",
                "local-chain.sqlite3", "local-chain.sqlite3-wal", "local-chain.sqlite3-shm",
                "treasury.json", "webhook-signing.key")


async def test_a_fresh_data_dir_and_its_databases_are_private(
    tmp_path: Path, gateway_process: StartProcess,
) -> None:
    settings = make_settings(tmp_path / "data")
    running = await start(gateway_process, settings)
    await signed_in_account(running.url)  # the ledger written to
    data = settings.data_dir
    assert mode(data) == 0o700
    present = [name for name in SECRET_FILES if (data / name).exists()]
    assert {"ledger.sqlite3", "local-chain.sqlite3", "treasury.json"} <= set(present)
    assert {name: mode(data / name) for name in present} == dict.fromkeys(present, 0o600)


async def test_an_existing_loose_data_dir_and_ledger_are_tightened(
    tmp_path: Path, gateway_process: StartProcess,
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "ledger.sqlite3").touch()
    (data / "ledger.sqlite3").chmod(0o644)
    running = await start(gateway_process, make_settings(data))
    await signed_in_account(running.url)
    assert mode(data) == 0o700
    assert mode(data / "ledger.sqlite3") == 0o600


@pytest.mark.parametrize("chain", ["local", "rpc"])
def test_a_gateway_refuses_a_treasury_keypair_others_can_read(
    tmp_path: Path, chain: str,
) -> None:
    if chain == "rpc":
        settings = rpc_gateway_settings(tmp_path, "http://127.0.0.1:9")
        key = settings.treasury_path
    else:
        settings = make_settings(tmp_path / "data")  # the local chain's treasury.json
        key = treasury_file(settings.data_dir).rename(settings.treasury_path)
    key.chmod(0o644)
    finished = subprocess.run(
        [sys.executable, "-m", "nexus_app", "--gateway"], env=env_for(settings), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 1, finished
    assert str(key) in finished.stderr and f"chmod 600 {key}" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert mode(key) == 0o644  # the operator decides; the gateway only refuses
