"""Hostile input: odd HTTP bodies and headers, and a worker WebSocket fed junk, oversize
frames and floods. Never a 5xx, never a crash, memory bounded, and no secret or prompt in the
gateway's log even at debug level. (Schema-driven fuzzing of every endpoint is
tests/gateway/test_api_fuzz.py; guessing keys per address and revoked keys are in
tests/gateway/test_api.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from pathlib import Path

import httpx
import pytest
import websockets

from nexus_app.gateway.workers.admission import HANDSHAKES_PER_ADDRESS
from nexus_app.protocol import Status, encode
from tests.support.gateways import auth, make_settings, running_gateway, signed_in_account
from tests.support.processes import rss_bytes
from tests.support.scripted_worker import ScriptedWorker
from tests.support.worker_socket import closed_reason, handshake

POST_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
              "/v1/auth/challenge", "/v1/auth/login", "/v1/keys", "/v1/deposits",
              "/v1/faucet", "/v1/webhooks", "/v1/workers/claim"]
HOSTILE_BODIES: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,  # deeply nested
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"model": "\xff\xfe\xfa", "messages": []}',  # invalid UTF-8
    b"\x00" * 1000,
    b'{"model": "' + b"x" * 1_000_000 + b'"}',  # large but under the body limit
    b'{"messages": [' + b'{"role": "user", "content": "hi"},' * 20_000 + b"1]}",
    b'{"model": 1e999999, "max_tokens": -99999999999999999999999}',
    b"null", b"[]", b'"text"', b"",
]


async def test_hostile_bodies_never_get_a_5xx(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, ip_rate_limit_rpm=100_000)) as gw:
        account = await gw.account(credit=1_000_000)
        await gw.worker()
        statuses = set()
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            for path in POST_PATHS:
                for body in HOSTILE_BODIES:
                    for headers in (auth(account.api_key), {}):
                        response = await http.post(path, content=body, headers={
                            **headers, "Content-Type": "application/json"})
                        assert response.status_code < 500, (path, body[:40], response.text)
                        assert "error" in response.json()
                        statuses.add(response.status_code)
            huge = await http.post("/v1/chat/completions", content=b"[" * 5_000_000,
                                   headers=auth(account.api_key))
            assert huge.status_code == 413
            assert (await http.get("/health")).status_code == 200
        assert statuses <= {400, 401, 404, 405, 413, 415, 422, 429}


def raw_request(port: int, request: bytes) -> bytes:
    """Send raw bytes over a socket (what no HTTP client would send); returns the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        return answer


async def test_malformed_http_never_gets_a_5xx(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        port = gw.settings.port
        requests = [
            b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
            b"GET /v1/balance HTTP/1.1\r\nHost: x\r\nAuthorization: " + b"A" * 60_000 +
            b"\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"\r\nzz\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200),  # TLS to HTTP
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        for request in requests:
            answer = await asyncio.to_thread(raw_request, port, request)
            if answer:  # uvicorn may just close the connection
                status = int(answer.split(b" ", 2)[1])
                assert status < 500, (request[:60], answer[:200])
        async with httpx.AsyncClient(base_url=gw.url) as http:
            assert (await http.get("/health")).status_code == 200


async def test_worker_socket_junk_oversize_and_floods(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_frame_bytes=64 * 1024)
    async with running_gateway(settings) as gw:
        url = gw.url.replace("http", "ws") + "/v1/workers/connect"
        account = await gw.account(credit=100_000)
        honest = await gw.worker()
        baseline = rss_bytes(os.getpid())
        junk: list[str | bytes] = [os.urandom(512), "{", "[]", '{"type": 5}', "null",
                                   '{"type": "hello", "wallet": [], "signature": {}}',
                                   json.dumps({"type": "status", "slots": -1} | {
                                       f"k{i}": i for i in range(5000)})]
        for frame in junk:  # before and after the handshake
            for authenticated in (False, True):
                async with websockets.connect(url, max_size=None) as ws:
                    if authenticated:
                        await handshake(ws)
                        await ws.recv()
                    else:
                        await ws.recv()  # the challenge
                    await ws.send(frame)
                    code, _ = await closed_reason(ws)
                assert code in (1003, 1008, 1009), frame
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()
            await ws.send("x" * 1_000_000)  # oversize before the handshake
            assert (await closed_reason(ws))[0] == 1009
        async with websockets.connect(url, max_size=None) as ws:  # a flood of valid frames
            await handshake(ws)
            await ws.recv()
            status = encode(Status(slots=4, tokens_per_s=1.0))
            with contextlib.suppress(websockets.ConnectionClosed):  # closed past
                for _ in range(20_000):  # worker_frames_per_s, if it sends that fast
                    await ws.send(status)
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
                chat = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                       json={"model": "scripted-model", "messages": [
                                           {"role": "user", "content": "hi"}]})
            assert chat.status_code == 200
        for _ in range(200):  # a flood of connections that never say hello
            async with websockets.connect(url) as ws:
                await ws.recv()
        assert honest.worker_id in gw.gateway.coordinator.workers
        assert rss_bytes(os.getpid()) - baseline < 64 * 2**20
        assert (await gw.store.audit()).ok


@pytest.mark.slow
async def test_no_secret_or_prompt_in_the_debug_log(gateway_process, tmp_path: Path) -> None:
    gateway = gateway_process(make_settings(tmp_path / "data", log_level="debug"))
    canary = f"CANARY-{uuid.uuid4().hex}"
    account = await signed_in_account(gateway.url)
    _, key = await gateway.funded_key(100_000)
    worker = await ScriptedWorker(gateway.url, reply=f"reply {canary}").start()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        for stream in (False, True):
            await http.post("/v1/chat/completions", headers=auth(key), json={
                "model": "scripted-model", "stream": stream,
                "messages": [{"role": "user", "content": canary}]})
        await http.post("/v1/chat/completions", headers=auth(key + "x"), json={
            "model": "scripted-model", "messages": [{"role": "user", "content": canary}]})
        await http.post("/v1/chat/completions", headers=auth(key),
                        content=b'{"messages": "' + canary.encode() + b'"')  # malformed
        session = {"Authorization": f"Bearer {account.session}"}
        await http.post("/v1/keys", json={"name": canary}, headers=session)
    await worker.stop()
    gateway.process.terminate()
    gateway.process.wait(10)
    log = gateway.log_path.read_text()
    assert "DEBUG" in log  # the log really was at debug level
    secrets = [key, key[len("nex_live_"):], account.api_key, account.session, canary,
               str(list(bytes(account.keypair))[:8])[1:-1]]
    for secret in secrets:
        assert secret not in log, secret[:12]


async def test_unfinished_handshakes_are_bounded_per_address(gw) -> None:
    url = gw.url.replace("http", "ws") + "/v1/workers/connect"
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(HANDSHAKES_PER_ADDRESS):  # connections that never say hello
            ws = await stack.enter_async_context(websockets.connect(url))
            await ws.recv()  # the challenge
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        assert refused.value.response.status_code == 403
    honest = await gw.worker()  # once they are gone, a worker gets in
    assert honest.worker_id in gw.gateway.coordinator.workers
