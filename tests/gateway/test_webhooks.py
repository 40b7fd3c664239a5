"""Webhooks against a real gateway and a real HTTP receiver on loopback (allowed here with
`webhook_allow_loopback`, as the local network does): signed events (deposit.credited with a
real deposit on the local chain, key.created, key.revoked, balance.low, model.unavailable),
verification, retries until a receiver that was down comes back (across a gateway restart),
giving up after the last attempt, and bad registrations. Webhooks are managed with the
wallet's sign-in session."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nexus_app.client.gateway import GatewayClient
from nexus_app.gateway.ledger.records import Webhook, WebhookDelivery
from nexus_app.webhook_signing import InvalidSignature, signature, verify
from tests.support.api import assert_openai_error
from tests.support.asgi import free_port, read_body, serving
from tests.support.gateways import RunningGateway, auth, make_settings, running_gateway

pytestmark = pytest.mark.both_ledgers  # on the SQLite ledger and on PostgreSQL

NEXUS = 10**6


@dataclass
class Receiver:
    """A webhook receiver on loopback that records what it gets (and can answer 500)."""

    port: int = field(default_factory=free_port)
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> Receiver:
        self._serving = serving(self, self.port)
        await self._serving.__aenter__()
        return self

    async def stop(self) -> None:
        await self._serving.__aexit__(None, None, None)

    async def wait_for(self, event: str, timeout: float = 10) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in self.received:
                if json.loads(body)["type"] == event:
                    return headers, body
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event} event; got {[b for _, b in self.received]}")


def fast_retries(tmp_path: Path, **overrides):
    return make_settings(tmp_path, webhook_retry_base_s=0.1, webhook_allow_loopback=True,
                         **overrides)


@pytest.fixture
async def gw(tmp_path: Path, ledger_url: str | None) -> AsyncIterator[RunningGateway]:
    """A gateway whose webhooks may reach receivers on loopback."""
    async with running_gateway(make_settings(tmp_path, ledger_url=ledger_url,
                                             webhook_allow_loopback=True)) as running:
        yield running


async def register(http: httpx.AsyncClient, session: str, **body) -> dict:
    response = await http.post("/v1/webhooks", json=body, headers=auth(session))
    assert response.status_code == 200, response.text
    return response.json()


async def test_deposit_credited_is_signed_and_verifies(
        tmp_path: Path, ledger_url: str | None) -> None:
    async with running_gateway(fast_retries(tmp_path, ledger_url=ledger_url)) as gw:
        receiver = await Receiver().start()
        account = await gw.account()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            hook = await register(http, account.session, url=receiver.url,
                                  events=["deposit.credited"])
            assert hook["secret"].startswith("whsec_") and hook["events"] == ["deposit.credited"]
            listed = (await http.get("/v1/webhooks", headers=auth(account.session))).json()
            assert [h["id"] for h in listed["data"]] == [hook["id"]]
            assert "secret" not in json.dumps(listed)

            async with GatewayClient(gw.url, token=account.session) as client:
                await client.faucet("100")
                deposit = await client.deposit(account.keypair, "25")
            headers, body = await receiver.wait_for("deposit.credited")
            event = json.loads(body)
            assert event["account"] == account.wallet and event["id"].startswith("evt_")
            assert event["data"]["amount"] == 25 * NEXUS
            assert event["data"]["signature"] == deposit.signature
            assert headers["x-nexus-event"] == "deposit.credited"

            verify(hook["secret"], headers["x-nexus-signature"], body)  # does not raise
            with pytest.raises(InvalidSignature):
                verify("whsec_wrong", headers["x-nexus-signature"], body)
            with pytest.raises(InvalidSignature):
                verify(hook["secret"], headers["x-nexus-signature"], body + b" ")
            with pytest.raises(InvalidSignature):  # a replay long after it was sent
                verify(hook["secret"], headers["x-nexus-signature"], body, now=time.time() + 900)
            stale = signature(hook["secret"], int(time.time()) - 3600, body)
            with pytest.raises(InvalidSignature):
                verify(hook["secret"], stale, body)

            log = (await http.get(f"/v1/webhooks/{hook['id']}/deliveries",
                                  headers=auth(account.session))).json()["data"]
            assert [(d["event"], d["status"], d["attempts"], d["last_status"], d["last_error"])
                    for d in log] == [("deposit.credited", "delivered", 1, "2xx", None)]
        await receiver.stop()


async def test_a_receiver_that_is_down_gets_the_event_after_it_comes_back(
        tmp_path, ledger_url: str | None) -> None:
    receiver = Receiver()  # not started: connections are refused
    settings = fast_retries(tmp_path, ledger_url=ledger_url)
    async with running_gateway(settings) as gw:
        account = await gw.account()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            hook = await register(http, account.session, url=receiver.url,
                                  events=["key.created", "key.revoked"])
            async with GatewayClient(gw.url, token=account.session) as client:
                created = await client.create_key("ci")
            log_url = f"/v1/webhooks/{hook['id']}/deliveries"
            for _ in range(200):
                [delivery] = (await http.get(log_url, headers=auth(account.session))
                              ).json()["data"]
                if delivery["attempts"] >= 2:
                    break
                await asyncio.sleep(0.05)
            assert (delivery["status"], delivery["last_status"]) == ("pending", "refused")
    # the gateway restarts (same data dir and signing key) while the receiver is still down
    async with running_gateway(fast_retries(tmp_path, ledger_url=ledger_url,
                                            port=settings.port)) as gw:
        await receiver.start()
        headers, body = await receiver.wait_for("key.created", timeout=30)
        verify(hook["secret"], headers["x-nexus-signature"], body)
        event = json.loads(body)
        assert event["data"] == {"id": created.id, "name": "ci", "prefix": created.prefix}
        assert created.key not in body.decode()  # the secret never leaves the gateway
        async with GatewayClient(gw.url, token=account.session) as client:
            await client.revoke_key(created.id)
            await client.revoke_key(created.id)  # already revoked: no second event
        await receiver.wait_for("key.revoked")
        await asyncio.sleep(0.3)
        assert [json.loads(b)["type"] for _, b in receiver.received] == [
            "key.created", "key.revoked"]
    await receiver.stop()


async def test_balance_low_fires_once_when_the_credit_falls_under_the_threshold(gw, http):
    receiver = await Receiver().start()
    account = await gw.account(credit=3000)  # scripted-model costs 1000 a request
    await gw.worker()
    await register(http, account.session, url=receiver.url, events=["balance.low"],
                   balance_low_threshold="0.0015")
    chat = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        response = await http.post("/v1/chat/completions", json=chat,
                                   headers=auth(account.api_key))
        assert response.status_code == 200
    _, body = await receiver.wait_for("balance.low")
    assert json.loads(body)["data"] == {"balance": 1000, "threshold": 1500}
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1  # at 0 it is still low: not sent again
    await receiver.stop()


async def test_model_unavailable_when_its_last_worker_leaves(gw, http) -> None:
    gw.gateway.webhooks.model_grace_s = 0.1
    receiver = await Receiver().start()
    account = await gw.account(credit=10_000)
    await register(http, account.session, url=receiver.url, events=["model.unavailable"])
    first, second = await gw.worker(), await gw.worker()
    chat = {"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post("/v1/chat/completions", json=chat, headers=auth(account.api_key))
    assert response.status_code == 200  # the account uses the model: it is told when it goes
    await first.stop()
    await asyncio.sleep(0.4)
    assert receiver.received == []  # still served by the second worker
    await second.stop()
    _, body = await receiver.wait_for("model.unavailable")
    assert json.loads(body)["data"] == {"model": "scripted-model"}
    await receiver.stop()


async def test_a_delivery_is_given_up_after_the_last_attempt(
        tmp_path: Path, ledger_url: str | None) -> None:
    async with running_gateway(fast_retries(tmp_path, ledger_url=ledger_url,
                                            webhook_max_attempts=2)) as gw:
        receiver = Receiver(status=500)
        await receiver.start()
        account = await gw.account()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            hook = await register(http, account.session, url=receiver.url)
            async with GatewayClient(gw.url, token=account.session) as client:
                await client.create_key("x")
            for _ in range(100):
                [delivery] = (await http.get(f"/v1/webhooks/{hook['id']}/deliveries",
                                             headers=auth(account.session))).json()["data"]
                if delivery["status"] != "pending":
                    break
                await asyncio.sleep(0.05)
            assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == (
                "failed", 2, "5xx")
            assert len(receiver.received) == 2
        await receiver.stop()


@pytest.mark.parametrize(("body", "param"), [
    ({"url": "http://example.com/hook"}, "url"),
    ({"url": "ftp://127.0.0.1/hook"}, "url"),
    ({"url": "https://"}, "url"),
    ({"url": "https://example.com/hook", "events": ["balance.low"]}, "balance_low_threshold"),
    ({"url": "https://example.com/hook", "events": ["payment.made"]}, "events.0"),
    ({"url": "https://example.com/hook", "events": []}, "events"),
    ({"url": "https://example.com/hook", "balance_low_threshold": "-1"},
     "balance_low_threshold"),
])
async def test_bad_registrations_are_clear_400s(gw, http, body, param) -> None:
    account = await gw.account()
    response = await http.post("/v1/webhooks", json=body, headers=auth(account.session))
    assert assert_openai_error(response, 400)["param"] == param
    assert (await http.get("/v1/webhooks", headers=auth(account.session))).json()["data"] == []


async def test_webhooks_belong_to_their_account(gw, http) -> None:
    alice, bob = await gw.account(), await gw.account()
    hook = await register(http, alice.session, url="https://example.com/hook")
    for method, path in [("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
                         ("DELETE", f"/v1/webhooks/{hook['id']}")]:
        response = await http.request(method, path, headers=auth(bob.session))
        assert_openai_error(response, 404)
    assert_openai_error(await http.get("/v1/webhooks"), 401)
    for _ in range(9):
        await register(http, alice.session, url="https://example.com/hook")
    response = await http.post("/v1/webhooks", json={"url": "https://example.com/hook"},
                               headers=auth(alice.session))
    assert_openai_error(response, 400, "too_many_webhooks")
    deleted = await http.delete(f"/v1/webhooks/{hook['id']}", headers=auth(alice.session))
    assert deleted.json()["deleted"] is True


def test_the_readme_verifier_agrees_with_the_helper() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    snippet = readme.split("def verify(secret: str, header: str, body: bytes", 1)[1]
    code = "def verify(secret: str, header: str, body: bytes" + snippet.split("```", 1)[0]
    scope: dict = {}
    exec(compile("import hashlib, hmac, time\n" + code, "README.md", "exec"), scope)
    body = b'{"id": "evt_1", "type": "key.created"}'
    header = signature("whsec_abc", int(time.time()), body)
    assert scope["verify"]("whsec_abc", header, body)
    assert not scope["verify"]("whsec_other", header, body)
    assert not scope["verify"]("whsec_abc", signature("whsec_abc", 1, body), body)


async def test_ended_deliveries_and_old_model_records_are_pruned(store) -> None:
    now = time.time()
    await store.add_webhook(Webhook("wh_1", "acct", "https://example.com/h", ("key.created",),
                                    None, now))
    old, recent = now - 10 * 86_400, now - 60
    await store.add_deliveries([
        WebhookDelivery(f"whd_{n}", "wh_1", f"evt_{n}", "key.created", b"{}", "pending", 0,
                        at, at) for n, at in enumerate([old, old, old, recent])])
    await store.record_attempt("whd_0", "delivered", old, "2xx")
    await store.record_attempt("whd_1", "failed", old, "5xx")
    await store.record_attempt("whd_3", "delivered", recent, "2xx")
    await store.note_model_served("acct", "old-model", old)
    await store.note_model_served("acct", "used-model", recent)

    assert await store.prune_webhooks(now - 7 * 86_400) == 2
    kept = {d.id: (d.status, d.last_outcome) for d in await store.deliveries("wh_1", 10)}
    assert kept == {"whd_2": ("pending", None), "whd_3": ("delivered", "2xx")}  # pending stays
    assert await store.claim_model_alerts("old-model", now, now) == []
    assert await store.claim_model_alerts("used-model", now - 3600, now) == ["acct"]
    assert await store.claim_model_alerts("used-model", now - 3600, now) == []  # once an hour
