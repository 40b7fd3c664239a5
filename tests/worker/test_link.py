"""The worker WebSocket protocol and the coordinator, with scripted test workers: handshake,
malformed frames, routing, queueing, retries, worker loss and client cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import websockets
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign
from nexus_app.protocol import (
    PROTOCOL_VERSION,
    Chunk,
    Hello,
    ModelCard,
    Status,
    encode,
    parse_gateway_frame,
    worker_auth_message,
)
from tests.support.api import CHAT
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.scripted_worker import ScriptedWorker
from tests.support.worker_socket import closed_reason, handshake, ws_url


async def test_bad_signature_is_refused_with_a_reason(gw: RunningGateway) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        challenge = parse_gateway_frame(await ws.recv())
        keypair = Keypair()
        frame = Hello(protocol=PROTOCOL_VERSION, wallet=str(keypair.pubkey()),
                      signature=sign(Keypair(), worker_auth_message(challenge.nonce)),
                      models=[ModelCard(id="scripted-model")])
        await ws.send(encode(frame))
        code, reason = await closed_reason(ws)
    assert code == 1008 and "signature" in reason
    assert gw.gateway.coordinator.workers == {}


async def test_wrong_protocol_version_is_refused(gw: RunningGateway) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        challenge = parse_gateway_frame(await ws.recv())
        keypair = Keypair()
        hello = {"type": "hello", "protocol": 99, "wallet": str(keypair.pubkey()),
                 "signature": sign(keypair, worker_auth_message(challenge.nonce)),
                 "models": [{"id": "m"}]}
        await ws.send(json.dumps(hello))
        code, reason = await closed_reason(ws)
    assert code == 1008 and "protocol" in reason


async def test_malformed_frames_close_only_that_connection(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=10_000)
    good = await gw.worker()
    for bad in ("not json", '{"type": "chunk"}', b"\x00binary", '{"type": "hello"}'):
        async with websockets.connect(ws_url(gw)) as ws:
            await handshake(ws)
            await ws.recv()  # ready
            await ws.send(bad)
            code, reason = await closed_reason(ws)
        assert code in (1003, 1008), (bad, code)
        assert reason
    response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    assert response.status_code == 200
    assert len(good.jobs) == 1


async def test_oversize_frame_closes_the_connection(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, max_frame_bytes=4096)) as gw:
        async with websockets.connect(ws_url(gw), max_size=None) as ws:
            await handshake(ws)
            await ws.recv()
            await ws.send(encode(Chunk(job_id="x", text="y" * 10_000)))
            code, _ = await closed_reason(ws)
        assert code == 1009
        async with httpx.AsyncClient(base_url=gw.url) as http:
            assert (await http.get("/health")).status_code == 200


async def test_a_frame_for_a_job_never_given_disconnects_the_worker(gw: RunningGateway) -> None:
    async with websockets.connect(ws_url(gw)) as ws:
        await handshake(ws)
        await ws.recv()
        await ws.send(encode(Chunk(job_id="job_invented", text="spam")))
        code, reason = await closed_reason(ws)
    assert code == 1008 and "not given" in reason


async def test_no_hello_in_time(gw: RunningGateway, monkeypatch) -> None:
    from nexus_app.gateway.api import worker_socket as worker_link

    monkeypatch.setattr(worker_link, "HELLO_TIMEOUT_S", 0.2)
    async with websockets.connect(ws_url(gw)) as ws:
        code, reason = await closed_reason(ws)
    assert code == 1008 and "hello" in reason


async def test_routes_to_the_least_loaded_worker(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=100_000)
    slow = [await gw.worker(slots=2, token_delay_s=0.05) for _ in range(3)]
    requests = [http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
                for _ in range(6)]
    responses = await asyncio.gather(*requests)
    assert all(r.status_code == 200 for r in responses)
    assert sorted(len(w.jobs) for w in slow) == [2, 2, 2]


async def test_a_draining_worker_gets_no_new_jobs(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=100_000)
    draining, open_one = await gw.worker(), await gw.worker()
    assert draining._ws is not None
    await draining._ws.send(encode(Status(slots=0)))  # what a worker sends on SIGTERM
    await asyncio.sleep(0.1)
    responses = await asyncio.gather(*(
        http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
        for _ in range(4)))
    assert all(r.status_code == 200 for r in responses)
    assert (len(draining.jobs), len(open_one.jobs)) == (0, 4)


async def test_queue_waits_for_a_free_slot_then_times_out(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, queue_timeout_s=0.5, queue_max=1)
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=100_000)
        await gw.worker(slots=1, token_delay_s=0.3)
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            post = lambda: http.post(  # noqa: E731
                "/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
            statuses = [r.status_code for r in await asyncio.gather(post(), post(), post())]
        # one runs, one waits in the queue (then times out), one finds the queue full
        assert sorted(statuses) == [200, 503, 503]
        balance = await gw.store.balance(account.wallet)
        assert (balance.balance, balance.reserved) == (100_000 - 1000, 0)


async def test_queued_request_is_served_when_a_slot_frees(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker(slots=1, token_delay_s=0.02)
    requests = [http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
                for _ in range(5)]
    assert [r.status_code for r in await asyncio.gather(*requests)] == [200] * 5
    assert len(worker.jobs) == 5


async def request_held_by_a_slow_worker(gw: RunningGateway, http) -> tuple[
    ScriptedWorker, asyncio.Task[httpx.Response]
]:
    """A chat request whose job sits on a worker that has not answered yet."""
    account = await gw.account(credit=100_000)
    slow = await gw.worker(first_token_delay_s=5)
    request = asyncio.create_task(
        http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key)))
    while not slow.jobs:
        await asyncio.sleep(0.01)
    return slow, request


async def test_worker_lost_before_first_token_is_retried_elsewhere(gw, http) -> None:
    doomed, request = await request_held_by_a_slow_worker(gw, http)
    backup = await gw.worker()
    await doomed.stop()
    response = await request
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == backup.reply
    assert (await gw.store.worker_earnings(backup.wallet)).earned == 800
    assert (await gw.store.worker_earnings(doomed.wallet)).earned == 0


async def test_worker_error_before_first_token_is_retried(gw, http) -> None:
    flaky, request = await request_held_by_a_slow_worker(gw, http)
    await gw.worker()
    await flaky.send_error(flaky.jobs[0].job_id, "out_of_memory")
    response = await request
    assert response.status_code == 200, response.text


async def stream_timings(http: httpx.AsyncClient, api_key: str) -> tuple[float, float, list]:
    """A streamed chat: seconds to its response headers and to its first text, its events."""
    started, events = time.monotonic(), []
    async with http.stream("POST", "/v1/chat/completions", headers=auth(api_key),
                           json={**CHAT, "stream": True}) as response:
        headers, first = time.monotonic() - started, 0.0
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                first = first or time.monotonic() - started
    return headers, first, events


async def test_a_job_the_worker_started_gets_its_headers_before_its_first_token(
        gw, http) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker(starts=True, first_token_delay_s=1.0)
    headers, first, events = await stream_timings(http, account.api_key)
    assert headers < 0.6 <= 1.0 <= first
    delta = events[0]["choices"][0]["delta"]  # the start itself adds no event
    assert delta == {"role": "assistant", "content": worker.tokens()[0]}
    await worker.stop()
    await gw.worker(first_token_delay_s=1.0)  # a worker that does not say it started
    headers, first, _ = await stream_timings(http, account.api_key)
    assert headers >= 1.0


async def test_a_worker_that_fails_after_starting_is_retried_before_its_first_token(
        gw, http) -> None:
    account = await gw.account(credit=100_000)
    flaky = await gw.worker(starts=True, first_token_delay_s=30)
    request = asyncio.create_task(stream_timings(http, account.api_key))
    while not flaky.jobs:
        await asyncio.sleep(0.01)
    backup = await gw.worker()
    await asyncio.sleep(0.2)  # the start reached the client
    await flaky.send_error(flaky.jobs[0].job_id, "out_of_memory")
    _, _, events = await request
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == backup.reply
    assert (await gw.store.worker_earnings(backup.wallet)).earned == 800


async def test_worker_lost_mid_stream_ends_with_an_error_and_refunds(gw, http) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker(token_delay_s=0.1)
    lines = []
    async with http.stream("POST", "/v1/chat/completions", headers=auth(account.api_key),
                           json={**CHAT, "stream": True}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                lines.append(line)
            if len(lines) == 3:
                await worker.stop()
    assert "error" in json.loads(lines[-1][5:])
    assert "[DONE]" not in lines[-1]
    balance = await gw.store.balance(account.wallet)
    assert (balance.balance, balance.reserved) == (100_000, 0)
    assert (await gw.store.audit()).ok


async def test_client_disconnect_cancels_the_job(gw: RunningGateway) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker(token_delay_s=0.1, reply=" ".join(["word"] * 200))
    async with httpx.AsyncClient(base_url=gw.url) as client:
        async with client.stream("POST", "/v1/chat/completions", headers=auth(account.api_key),
                                 json={**CHAT, "stream": True}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:") and "word" in line:
                    break
    job_id = worker.jobs[0].job_id
    for _ in range(50):
        if job_id in worker.cancelled:
            break
        await asyncio.sleep(0.02)
    assert job_id in worker.cancelled
    produced = worker.tokens_sent[job_id]
    await asyncio.sleep(0.5)
    assert worker.tokens_sent[job_id] == produced < 200
    await asyncio.sleep(0.3)
    balance = await gw.store.balance(account.wallet)
    # billed for what was produced (the flat per-request fee here), nothing left reserved
    assert (balance.balance, balance.reserved) == (100_000 - 1000, 0)
    assert (await gw.store.audit()).ok


async def test_the_gateway_sends_earnings_to_the_worker(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker()
    await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    for _ in range(150):
        if worker.earned:
            break
        await asyncio.sleep(0.02)
    assert worker.earned == 800


async def test_a_stalled_worker_hits_the_deadline_and_the_request_is_refunded(
    tmp_path: Path,
) -> None:
    async with running_gateway(make_settings(tmp_path, job_timeout_s=0.5)) as gw:
        account = await gw.account(credit=100_000)
        stalled = await gw.worker(first_token_delay_s=30)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(account.api_key))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "worker_failed"
        for _ in range(50):
            if stalled.cancelled:
                break
            await asyncio.sleep(0.02)
        assert stalled.cancelled == {stalled.jobs[0].job_id}  # told to stop working on it
        balance = await gw.store.balance(account.wallet)
        assert (balance.balance, balance.reserved) == (100_000, 0)
