"""Worker output attacks, each performed against a real gateway: results that fail validation
(a wrong number of embedding vectors, a malformed tool call, tool calls a job did not offer),
output past what `max_tokens` allows (300 MB for `max_tokens=5`, text past max_tokens into a
non-streamed answer), a flood of frames, and a client that reads a stream too slowly.

Each attack fails: the caller is not charged, the worker earns nothing and is benched, the
gateway's memory stays bounded, and the ledger audit holds. The workers are the scripted
worker (a TEST DOUBLE of the worker node, speaking the real protocol with hostile flags).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

from nexus_app.gateway.workers.health import COOLING_DOWN
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway
from tests.support.processes import GatewayProcess, rss_bytes
from tests.support.scripted_worker import ScriptedWorker

CREDIT = 1_000_000
CHAT = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
PRICE = {"per_request": 1000, "output_per_million": 1_000_000}  # 1 base unit per token
MB = 1024 * 1024


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[RunningGateway]:
    values = {"prices": {"scripted-model": PRICE}, **settings}
    async with running_gateway(make_settings(tmp_path, **values)) as gw:
        yield gw


async def post(gw: RunningGateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
        return await http.post(path, headers=auth(key), json=body)


async def assert_attack_failed(gw: RunningGateway, account_wallet: str,
                               worker: ScriptedWorker) -> None:
    """The caller was not charged, the worker earned nothing and is benched, the ledger's
    audit holds."""
    balance = await gw.store.balance(account_wallet)
    assert (balance.balance, balance.reserved, balance.total_spent) == (CREDIT, 0, 0)
    assert (await gw.store.worker_earnings(worker.wallet)).earned == 0
    assert gw.gateway.coordinator.health.state(worker.wallet) == COOLING_DOWN
    assert (await gw.store.audit()).ok


def assert_worker_failed(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "worker_failed" and "not charged" in error["message"]


async def test_a_wrong_number_of_embedding_vectors_is_refunded(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        account = await gw.account(credit=CREDIT)
        honest = await gw.worker(serves_embeddings=True)
        body = {"model": "scripted-model", "input": ["one", "two", "three"]}
        good = await post(gw, account.api_key, "/v1/embeddings", body)
        assert good.status_code == 200 and len(good.json()["data"]) == 3
        await honest.stop()
        await gw.store.grant(account.wallet, (await gw.store.balance(
            account.wallet)).total_spent, "top the test account back up")
        spent_before = (await gw.store.balance(account.wallet)).total_spent

        liar = await gw.worker(wrong_vector_count=True, serves_embeddings=True)
        response = await post(gw, account.api_key, "/v1/embeddings", body)
        assert_worker_failed(response)
        assert "2 embedding vectors for 3 inputs" in response.json()["error"]["message"]
        balance = await gw.store.balance(account.wallet)
        assert balance.total_spent == spent_before and balance.reserved == 0
        assert (await gw.store.worker_earnings(liar.wallet)).earned == 0
        assert gw.gateway.coordinator.health.state(liar.wallet) == COOLING_DOWN
        assert (await gw.store.audit()).ok


async def test_a_malformed_tool_call_is_refunded_not_a_500(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        account = await gw.account(credit=CREDIT)
        liar = await gw.worker(malformed_tool_call=True)
        response = await post(gw, account.api_key, "/v1/chat/completions",
                              {**CHAT, "tools": TOOLS})
        assert_worker_failed(response)
        assert len(liar.jobs) == 1  # no retry reached it: it is benched
        await assert_attack_failed(gw, account.wallet, liar)


async def test_a_malformed_tool_call_in_a_stream_and_in_responses(tmp_path: Path) -> None:
    async with gateway(tmp_path, worker_cooldown_s=0.2) as gw:
        account = await gw.account(credit=CREDIT)
        liar = await gw.worker(malformed_tool_call=True)
        streamed = await post(gw, account.api_key, "/v1/chat/completions",
                              {**CHAT, "tools": TOOLS, "stream": True})
        assert_worker_failed(streamed)  # failed before its first event: a plain 503
        await asyncio.sleep(0.3)  # the cooldown ends
        turn = await post(gw, account.api_key, "/v1/responses", {
            "model": "scripted-model", "input": "hi",
            "tools": [{"type": "function", "name": "lookup", "parameters": {}}]})
        assert_worker_failed(turn)
        await assert_attack_failed(gw, account.wallet, liar)


async def test_tool_calls_a_job_did_not_offer_are_not_billed(tmp_path: Path) -> None:
    """`/v1/completions` used to bill the bytes of tool calls it then dropped."""
    async with gateway(tmp_path, worker_cooldown_s=0.2) as gw:
        account = await gw.account(credit=CREDIT)
        call = {"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{" + '"a": 1, ' * 300 + "}"}}
        liar = await gw.worker(unasked_tool_calls=True, tool_calls=[call])
        response = await post(gw, account.api_key, "/v1/completions",
                              {"model": "scripted-model", "prompt": "hi", "max_tokens": 50})
        assert_worker_failed(response)
        assert "offered no tools" in response.json()["error"]["message"]
        await asyncio.sleep(0.3)
        chat = await post(gw, account.api_key, "/v1/chat/completions", CHAT)
        assert_worker_failed(chat)
        await assert_attack_failed(gw, account.wallet, liar)


async def test_text_past_max_tokens_into_a_collected_answer_fails(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        account = await gw.account(credit=CREDIT)
        liar = await gw.worker(reply=" ".join(["word"] * 200), ignore_max_tokens=True)
        response = await post(gw, account.api_key, "/v1/chat/completions",
                              {**CHAT, "max_tokens": 5})
        assert_worker_failed(response)
        assert "max_tokens=5" in response.json()["error"]["message"]
        for _ in range(100):  # an overrun also closes the worker's connection
            if liar.close_reason is not None:
                break
            await asyncio.sleep(0.02)
        assert liar.close_reason and "over its limit" in liar.close_reason
        assert liar.worker_id not in gw.gateway.coordinator.workers
        await assert_attack_failed(gw, account.wallet, liar)


async def test_a_frame_flood_disconnects_and_benches_the_worker(tmp_path: Path) -> None:
    async with gateway(tmp_path, worker_frames_per_s=200) as gw:
        account = await gw.account(credit=CREDIT)
        flooder = await gw.worker(frame_flood=5000)
        response = await post(gw, account.api_key, "/v1/chat/completions", CHAT)
        assert response.status_code == 503, response.text
        assert flooder.close_reason and "frames a second" in flooder.close_reason
        assert len(flooder.jobs) == 1
        await assert_attack_failed(gw, account.wallet, flooder)
        again = await gw.worker(keypair=flooder.keypair)  # reconnecting does not lift it
        refused = await post(gw, account.api_key, "/v1/chat/completions", CHAT)
        assert refused.status_code == 503 and "cooling down" in refused.text
        assert not again.jobs


async def ledger_state(gateway: GatewayProcess, account: str, worker: str) -> tuple[int, ...]:
    store = await gateway.open_ledger()
    try:
        balance = await store.balance(account)
        earned = (await store.worker_earnings(worker)).earned
        assert (await store.audit()).ok
        return balance.balance, balance.reserved, balance.total_spent, earned
    finally:
        await store.close()


async def test_300_mb_for_five_tokens_is_cut_off_and_memory_stays_bounded(
    gateway_process: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    gateway = gateway_process(make_settings(tmp_path / "data", prices={"scripted-model": PRICE}))
    wallet, key = await gateway.funded_key(CREDIT)
    keypair = Keypair()
    flooder = await ScriptedWorker(gateway.url, keypair=keypair, flood_bytes=300 * MB).start()
    baseline = rss_bytes(gateway.process.pid)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        for stream in (False, True):
            response = await http.post("/v1/chat/completions", headers=auth(key),
                                       json={**CHAT, "max_tokens": 5, "stream": stream})
            assert response.status_code == 503, response.text
            grown = rss_bytes(gateway.process.pid) - baseline
            assert grown < 32 * MB, f"the gateway grew by {grown / MB:.0f} MB"
            await flooder.stop()  # (whatever it sends after the close is read and dropped)
            assert flooder.close_reason and "over its limit" in flooder.close_reason
            # the wallet is benched: reconnecting gets it no job
            flooder = await ScriptedWorker(gateway.url, keypair=keypair,
                                           flood_bytes=300 * MB).start()
            refused = await http.post("/v1/chat/completions", headers=auth(key), json=CHAT)
            assert refused.status_code == 503 and "cooling down" in refused.text
            assert not flooder.jobs
            await flooder.stop()
            flooder = await ScriptedWorker(gateway.url, keypair=Keypair(),
                                           flood_bytes=300 * MB).start()
    await flooder.stop()
    assert await ledger_state(gateway, wallet, str(keypair.pubkey())) == (CREDIT, 0, 0, 0)


async def read_headers(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200] + await reader.read(300)
    return head


async def test_a_slow_reading_client_does_not_make_the_gateway_buffer(
    gateway_process: Callable[..., GatewayProcess], tmp_path: Path,
) -> None:
    """An honest worker streams 40 MB to a client that stops reading: the gateway keeps at
    most `relay_buffer_bytes` for it, cancels the job, and bills what was delivered."""
    settings = make_settings(tmp_path / "data", relay_bytes_per_token=65_536,
                             relay_max_bytes=256 * MB, relay_buffer_bytes=256 * 1024)
    gateway = gateway_process(settings)
    wallet, key = await gateway.funded_key(CREDIT)
    token = "y" * 20_000
    worker = await ScriptedWorker(gateway.url, reply=" ".join([token] * 2000),
                                  token_delay_s=0.002).start()
    baseline = rss_bytes(gateway.process.pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.port)
    body = httpx.Request("POST", f"{gateway.url}/v1/chat/completions", headers=auth(key),
                         json={**CHAT, "stream": True, "max_tokens": 4000})
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n" \
           f"Content-Type: application/json\r\nContent-Length: {len(body.read())}\r\n\r\n"
    writer.write(head.encode() + body.read())
    await read_headers(reader)  # ... and then it reads no more
    peak, job_id = 0, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        peak = max(peak, rss_bytes(gateway.process.pid) - baseline)
        job_id = worker.jobs[0].job_id if worker.jobs else None
        if job_id in worker.cancelled:
            break
        await asyncio.sleep(0.05)
    assert job_id in worker.cancelled, "the job of a client that stopped reading runs on"
    await asyncio.sleep(0.5)
    peak = max(peak, rss_bytes(gateway.process.pid) - baseline)
    assert worker.tokens_sent[job_id] < 1000  # of 2000 (40 MB)
    assert peak < 24 * MB, f"the gateway grew by {peak / MB:.0f} MB"
    writer.close()
    await worker.stop()
    for _ in range(100):  # the client left: the job settles what was delivered
        state = await ledger_state(gateway, wallet, worker.wallet)
        if state[1] == 0:
            break
        await asyncio.sleep(0.05)
    balance, reserved, spent, earned = state
    assert reserved == 0 and balance + spent == CREDIT
    assert spent >= PRICE["per_request"] and earned == spent * 80 // 100
