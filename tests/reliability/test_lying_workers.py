"""Workers that lie: about the tokens they sent, about the jobs they were given, or by going on
after a cancel. They are paid only for what the gateway really relayed, and a frame for a job
they were never given disconnects them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import websockets

from nexus_app.protocol import Chunk, Done, Usage, encode
from tests.support.api import CHAT
from tests.support.gateways import auth, make_settings, running_gateway
from tests.support.worker_socket import closed_reason, handshake, ws_url

PRICE = {"per_request": 1000, "output_per_million": 1_000_000}  # 1 base unit per token
REPLY = "one two three four five"


async def test_claiming_more_tokens_than_sent_is_paid_for_what_was_relayed(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, prices={"scripted-model": PRICE})
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=1_000_000)
        liar = await gw.worker(reply=REPLY, claimed_tokens=100_000)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            response = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                       json={**CHAT, "max_tokens": 50_000})
        assert response.status_code == 200
        usage = response.json()["usage"]
        relayed = len(REPLY.encode())  # a token is at least one byte of text
        assert usage["completion_tokens"] <= relayed
        assert usage["cost"] <= 1000 + relayed
        balance = await gw.store.balance(account.wallet)
        assert balance.total_spent == usage["cost"] and balance.reserved == 0
        earned = (await gw.store.worker_earnings(liar.wallet)).earned
        assert earned == usage["cost"] * 80 // 100
        assert (await gw.store.audit()).ok


async def test_answers_after_a_cancel_earn_nothing_more(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, prices={"scripted-model": PRICE})
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=1_000_000)
        liar = await gw.worker(reply=" ".join(["word"] * 200), token_delay_s=0.01,
                               ignore_cancel=True, claimed_tokens=100_000)
        received = 0
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            async with http.stream("POST", "/v1/chat/completions",
                                   headers=auth(account.api_key),
                                   json={**CHAT, "stream": True, "max_tokens": 50_000}) as stream:
                async for line in stream.aiter_lines():
                    received += line.startswith("data:")
                    if received >= 5:
                        break  # the client leaves: the gateway cancels the job
        for _ in range(200):  # the liar keeps streaming the other ~195 words, then lies
            if liar.cancelled and len(liar.tokens_sent) and \
                    liar.tokens_sent[liar.jobs[0].job_id] == 200:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        balance = await gw.store.balance(account.wallet)
        assert balance.reserved == 0
        assert balance.total_spent < 1000 + 200  # well under the 200 words it went on to send
        assert liar.worker_id in gw.gateway.coordinator.workers  # late frames are not a crime
        assert (await gw.store.audit()).ok


async def test_a_frame_for_another_job_disconnects_the_worker(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw:
        account = await gw.account(credit=100_000)
        honest = await gw.worker()
        async with websockets.connect(ws_url(gw)) as ws:
            await handshake(ws)
            await ws.recv()  # ready
            # a done for a job it was never given, claiming a big bill
            await ws.send(encode(Done(job_id="job_other", finish_reason="stop",
                                      usage=Usage(prompt_tokens=1, completion_tokens=10**6))))
            code, reason = await closed_reason(ws)
        assert code == 1008 and "not given" in reason
        async with websockets.connect(ws_url(gw)) as ws:
            await handshake(ws)
            await ws.recv()
            await ws.send(encode(Chunk(job_id=f"{honest.worker_id}-guess", text="spam")))
            code, _ = await closed_reason(ws)
        assert code == 1008
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            response = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth(account.api_key))
        assert response.status_code == 200 and len(honest.jobs) == 1
        audit = await gw.store.audit()
        assert audit.ok and audit.worker_earnings == 800  # the honest worker's share only


async def test_log_probabilities_are_relayed_only_as_asked_and_one_per_token(
    tmp_path: Path,
) -> None:
    """A worker that sends log probabilities nobody asked for has them dropped; one that sends
    more than one per token it may generate fails the job: refunded, earning nothing."""
    settings = make_settings(tmp_path, prices={"scripted-model": PRICE})
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=1_000_000)
        chatty = await gw.worker(reply=REPLY, logprobs_per_token=1)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            plain = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                    json={**CHAT, "max_tokens": 50})
            asked = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                    json={**CHAT, "max_tokens": 50, "logprobs": True})
        assert plain.status_code == 200 and plain.json()["choices"][0]["logprobs"] is None
        assert asked.status_code == 200
        assert len(asked.json()["choices"][0]["logprobs"]["content"]) == len(REPLY.split())
        await chatty.stop()
        spent = (await gw.store.balance(account.wallet)).total_spent

        liar = await gw.worker(reply=REPLY, logprobs_per_token=100)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            response = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                       json={**CHAT, "max_tokens": 50, "logprobs": True})
        assert response.status_code == 503 and response.json()["error"]["code"] == "worker_failed"
        balance = await gw.store.balance(account.wallet)
        assert balance.total_spent == spent and balance.reserved == 0  # refunded in full
        assert (await gw.store.worker_earnings(liar.wallet)).earned == 0
        assert (await gw.store.audit()).ok


async def test_cached_tokens_are_reported_capped_and_change_no_price(tmp_path: Path) -> None:
    """A worker's count of prompt tokens it had cached is shown to the client, never more
    than the prompt tokens billed, and the cost is the same as without a cache."""
    price = {"per_request": 1000, "input_per_million": 1_000_000}  # 1 base unit per token
    settings = make_settings(tmp_path, prices={"scripted-model": price})
    async with running_gateway(settings) as gw:
        account = await gw.account(credit=1_000_000)
        honest = await gw.worker(prompt_tokens=40, cached_tokens=30)
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
            first = (await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                     json=CHAT)).json()["usage"]
            await honest.stop()
            await gw.worker(prompt_tokens=40, cached_tokens=10**6)
            second = (await http.post("/v1/chat/completions", headers=auth(account.api_key),
                                      json=CHAT)).json()["usage"]
        assert first["prompt_tokens_details"] == {"cached_tokens": 30}
        assert second["prompt_tokens_details"] == {"cached_tokens": second["prompt_tokens"]}
        assert first["cost"] == second["cost"] == 1000 + first["prompt_tokens"]
        assert (await gw.store.audit()).ok
