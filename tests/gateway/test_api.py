"""The HTTP API against a real gateway on loopback: error shapes and statuses, headers,
keys, wallet sign-in, models, balance, network stats, health, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from solders.keypair import Keypair

from nexus_app import siws
from nexus_app.chain.wallet import sign
from nexus_app.gateway.workers import coordinator
from tests.support.api import CHAT, assert_openai_error
from tests.support.gateways import auth, make_settings, running_gateway


async def test_every_response_has_request_id_and_rate_limit_headers(gw, http) -> None:
    account = await gw.account(credit=5000)
    await gw.worker()
    responses = [
        await http.get("/health"),
        await http.get("/v1/models"),
        await http.get("/nope"),
        await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key)),
        await http.post("/v1/chat/completions", json=CHAT, headers=auth("nex_live_wrong")),
    ]
    for response in responses:
        assert response.headers["x-request-id"].startswith("req_")
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert int(response.headers[header]) >= 0, (response.request.url, header)
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)


async def test_unknown_route_and_method(http) -> None:
    assert_openai_error(await http.get("/v1/nothing"), 404, "unknown_route")
    assert_openai_error(await http.get("/v1/chat/completions"), 405)


async def test_malformed_bodies_are_400(gw, http) -> None:
    account = await gw.account(credit=5000)
    headers = {**auth(account.api_key), "content-type": "application/json"}
    post = "/v1/chat/completions"
    error = assert_openai_error(await http.post(post, content=b"{not json", headers=headers), 400)
    assert "JSON" in error["message"]
    assert_openai_error(await http.post(post, content=b"\xff\xfe\x00", headers=headers), 400)
    error = assert_openai_error(
        await http.post(post, json={**CHAT, "temperature": "hot"}, headers=headers), 400)
    assert error["param"] == "temperature"
    error = assert_openai_error(
        await http.post(post, json={**CHAT, "messages": "hi"}, headers=headers), 400)
    assert error["param"].startswith("messages")
    assert_openai_error(await http.post(post, json={"model": "m"}, headers=headers), 400)
    assert_openai_error(await http.post(post, json={**CHAT, "n": 2}, headers=headers), 400)
    assert_openai_error(await http.post(post, json=[1, 2], headers=headers), 400)


@pytest.mark.parametrize(("path", "field", "value"), [
    ("/v1/embeddings", "input", [[9906, 1917]]),  # LangChain's OpenAIEmbeddings by default
    ("/v1/embeddings", "input", [9906, 1917]),
    ("/v1/completions", "prompt", [9906, 1917]),
    ("/v1/completions", "prompt", [[9906, 1917]]),
])
async def test_token_ids_are_refused_with_a_clear_400(gw, http, path, field, value) -> None:
    """Token ids of OpenAI's tokenizer mean other text to this network's models: a 400 that
    says so and asks for text, before anything is reserved or dispatched."""
    account = await gw.account(credit=5000)
    worker = await gw.worker()
    response = await http.post(path, headers=auth(account.api_key),
                               json={"model": "scripted-model", field: value})
    error = assert_openai_error(response, 400, "token_input_not_supported")
    assert error["param"] == field
    assert "token ids" in error["message"] and "text" in error["message"]
    if path == "/v1/embeddings":
        assert "check_embedding_ctx_length=False" in error["message"]
    assert worker.jobs == []
    assert (await gw.store.balance(account.wallet)).balance == 5000


@pytest.mark.parametrize(("path", "field", "value"), [
    ("/v1/embeddings", "input", 5), ("/v1/embeddings", "input", {"text": "a"}),
    ("/v1/embeddings", "input", [None]), ("/v1/embeddings", "input", [["a"]]),
    ("/v1/embeddings", "input", ["a", 1]), ("/v1/embeddings", "input", [True]),
    ("/v1/completions", "prompt", 5), ("/v1/completions", "prompt", [1.5]),
    ("/v1/completions", "prompt", [[1, "a"]]),
])
async def test_other_malformed_inputs_stay_400s(gw, http, path, field, value) -> None:
    account = await gw.account(credit=5000)
    response = await http.post(path, headers=auth(account.api_key),
                               json={"model": "scripted-model", field: value})
    error = assert_openai_error(response, 400)
    assert error["code"] == "invalid_request" and error["param"].startswith(field)


async def test_oversize_body_is_413(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, max_body_bytes=4096)) as gw:
        account = await gw.account(credit=5000)
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]}
        async with httpx.AsyncClient(base_url=gw.url) as http:
            response = await http.post("/v1/chat/completions", json=big,
                                       headers=auth(account.api_key))
            assert_openai_error(response, 413)

            async def chunked():
                for _ in range(10):
                    yield b"x" * 1000

            response = await http.post("/v1/chat/completions", content=chunked(),
                                       headers=auth(account.api_key))
            assert_openai_error(response, 413)


@pytest.mark.both_ledgers
async def test_authentication_errors(gw, http) -> None:
    error = assert_openai_error(await http.post("/v1/chat/completions", json=CHAT), 401)
    assert error["code"] == "missing_api_key"
    for header in ("Basic abc", "Bearer", "Bearer nex_live_guess", "Bearer nex_sess_guess"):
        response = await http.post("/v1/chat/completions", json=CHAT,
                                   headers={"Authorization": header})
        assert_openai_error(response, 401)


async def test_unknown_model_is_404_and_known_model_without_worker_is_503(gw, http) -> None:
    account = await gw.account(credit=5000)
    response = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                               json={**CHAT, "model": "no-such-model"})
    error = assert_openai_error(response, 404, "model_not_found")
    assert error["param"] == "model"
    response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    assert_openai_error(response, 503, "no_worker_available")
    assert int(response.headers["retry-after"]) > 0
    assert (await gw.store.balance(account.wallet)).balance == 5000  # refunded


async def wait_until_unserved(gw, model: str) -> None:
    for _ in range(200):
        if not gw.gateway.coordinator.serves(model):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{model} is still served")


async def test_a_model_whose_workers_left_is_503_with_retry_after(gw, http) -> None:
    """A model served earlier may come back: 503 `model_unavailable`, not the 404 of a model
    that never existed."""
    account = await gw.account(credit=100_000)
    worker = await gw.worker(models=["passing-model"])
    chat = {**CHAT, "model": "passing-model"}
    assert (await http.post("/v1/chat/completions", json=chat,
                            headers=auth(account.api_key))).status_code == 200
    await worker.stop()
    await wait_until_unserved(gw, "passing-model")
    for path, body in (("/v1/chat/completions", chat),
                       ("/v1/embeddings", {"model": "passing-model", "input": "a"}),
                       ("/v1/completions", {"model": "passing-model", "prompt": "a"})):
        response = await http.post(path, json=body, headers=auth(account.api_key))
        error = assert_openai_error(response, 503, "model_unavailable")
        assert error["param"] == "model" and int(response.headers["retry-after"]) > 0
    response = await http.post("/v1/chat/completions", json={**CHAT, "model": "never-served"},
                               headers=auth(account.api_key))
    assert_openai_error(response, 404, "model_not_found")
    assert (await gw.store.balance(account.wallet)).reserved == 0


async def test_models_served_earlier_are_remembered_within_a_bound(gw, http,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(coordinator, "MAX_REMEMBERED_MODELS", 3)
    account = await gw.account(credit=100_000)
    kept = await gw.worker(models=["kept-model"])
    for number in range(4):
        passing = await gw.worker(models=[f"model-{number}"])
        await passing.stop()
        await wait_until_unserved(gw, f"model-{number}")
    assert len(gw.gateway.coordinator.first_seen) == 3
    statuses = {}
    for model in ("kept-model", "model-0", "model-1", "model-2", "model-3"):
        response = await http.post("/v1/chat/completions", json={**CHAT, "model": model},
                                   headers=auth(account.api_key))
        statuses[model] = response.status_code
    # the oldest ids no worker serves are forgotten first; one served now is kept
    assert statuses == {"kept-model": 200, "model-0": 404, "model-1": 404, "model-2": 503,
                        "model-3": 503}
    assert len(kept.jobs) == 1


@pytest.mark.both_ledgers
async def test_insufficient_credit_is_402_and_charges_nothing(gw, http) -> None:
    account = await gw.account(credit=999)
    worker = await gw.worker()
    response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    assert_openai_error(response, 402, "insufficient_credit")
    assert (await gw.store.balance(account.wallet)).balance == 999
    assert worker.jobs == []


async def test_image_parts_to_a_text_model_are_refused(gw, http) -> None:
    account = await gw.account(credit=5000)
    worker = await gw.worker()
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    response = await http.post("/v1/chat/completions", headers=auth(account.api_key),
                               json={**CHAT, "messages": [{"role": "user", "content": content}]})
    error = assert_openai_error(response, 400, "image_input_not_supported")
    assert "text only" in error["message"]
    assert worker.jobs == []


async def test_text_parts_are_joined_and_params_pass_through(gw, http) -> None:
    account = await gw.account(credit=50_000)
    worker = await gw.worker()
    content = [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}]
    body = {
        "model": "scripted-model",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": content}],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 5, "stop": "\n", "seed": 7,
        "frequency_penalty": 0.5, "presence_penalty": -0.5, "user": "someone@example.com",
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto", "parallel_tool_calls": False,
    }
    response = await http.post("/v1/chat/completions", json=body, headers=auth(account.api_key))
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "length"
    request = worker.jobs[0].request
    assert request["messages"][1]["content"] == "Hello, world"
    assert request["stop"] == ["\n"]
    for name in ("temperature", "top_p", "max_tokens", "seed", "frequency_penalty",
                 "presence_penalty", "tool_choice", "parallel_tool_calls"):
        assert request[name] == body[name], name
    assert request["response_format"] == {"type": "json_object"}
    assert request["tools"][0]["function"]["name"] == "f"
    assert "someone@example.com" not in json.dumps(worker.jobs[0].model_dump())


def function_tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


@pytest.mark.parametrize("mode", ["auto", "required"])
async def test_allowed_tools_offer_only_the_allowed_functions(gw, http, mode) -> None:
    """OpenAI's `allowed_tools` choice: the worker is offered only the allowed tools, with
    `auto` or `required` as the choice."""
    account = await gw.account(credit=100_000)
    worker = await gw.worker()
    choice = {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": [
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "function", "function": {"name": "get_time"}}]}}
    body = {**CHAT, "tools": [function_tool(n) for n in ("get_weather", "send_mail", "get_time")],
            "tool_choice": choice}
    response = await http.post("/v1/chat/completions", json=body, headers=auth(account.api_key))
    assert response.status_code == 200, response.text
    request = worker.jobs[0].request
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather", "get_time"]
    assert request["tool_choice"] == mode


@pytest.mark.parametrize(("choice", "words"), [
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
        {"type": "function", "function": {"name": "delete_everything"}}]}},
     "'delete_everything', which is not in 'tools'"),
    ({"type": "function", "function": {"name": "delete_everything"}},
     "'delete_everything', which is not in 'tools'"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": [
        {"type": "function", "function": {"name": "get_weather"}}]}}, "mode"),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}, "at least 1"),
    ({"type": "allowed_tools"}, "allowed_tools"),
    ({"type": "web_search"}, "must be 'none', 'auto', 'required', a function or allowed_tools"),
    ("sometimes", "'none', 'auto' or 'required'"),
])
async def test_bad_tool_choices_are_400s(gw, http, choice, words) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker()
    body = {**CHAT, "tools": [function_tool("get_weather")], "tool_choice": choice}
    response = await http.post("/v1/chat/completions", json=body, headers=auth(account.api_key))
    error = assert_openai_error(response, 400)
    assert error["param"].startswith("tool_choice") and words in error["message"]
    assert worker.jobs == []
    assert (await gw.store.balance(account.wallet)).balance == 100_000


@pytest.mark.both_ledgers
async def test_rate_limit_per_key_with_retry_after(gw, http) -> None:
    account = await gw.account(credit=100_000)
    await gw.worker()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        session = {"Authorization": f"Bearer {account.session}"}
        key = (await client.post("/v1/keys", json={"name": "slow", "rpm": 3},
                                 headers=session)).json()["key"]
    statuses = []
    for _ in range(4):
        response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(key))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    assert response.headers["x-ratelimit-limit"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert_openai_error(response, 429, "rate_limit_exceeded")
    # another key of the same account is not affected
    ok = await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    assert ok.status_code == 200


async def test_guessing_keys_is_rate_limited_per_address(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, ip_rate_limit_rpm=5)) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            statuses = [
                (await http.get("/v1/balance", headers=auth(f"nex_live_guess{i}"))).status_code
                for i in range(7)
            ]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]


@pytest.mark.both_ledgers
async def test_keys_lifecycle_and_immediate_revocation(gw, http) -> None:
    account = await gw.account(credit=5000)
    await gw.worker()
    session = {"Authorization": f"Bearer {account.session}"}
    created = (await http.post("/v1/keys", json={"name": "laptop"}, headers=session)).json()
    secret = created["key"]
    assert secret.startswith("nex_live_") and len(secret) >= len("nex_live_") + 43
    assert created["prefix"] == secret[:15]
    listed = (await http.get("/v1/keys", headers=session)).json()["data"]
    assert {k["name"] for k in listed} == {"test", "laptop"}
    assert all("key" not in k and secret not in json.dumps(k) for k in listed)
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=auth(secret))).is_success
    revoked = await http.delete(f"/v1/keys/{created['id']}", headers=session)
    assert revoked.json()["revoked"] is True
    assert_openai_error(
        await http.post("/v1/chat/completions", json=CHAT, headers=auth(secret)), 401)
    assert_openai_error(await http.delete("/v1/keys/key_missing", headers=session), 404)
    listed = (await http.get("/v1/keys", headers=session)).json()["data"]
    assert [k["revoked"] for k in listed if k["id"] == created["id"]] == [True]
    await gw.gateway.auth.flush_last_used()
    listed = (await http.get("/v1/keys", headers=session)).json()["data"]
    assert [k["last_used_at"] is not None for k in listed if k["id"] == created["id"]] == [True]


@pytest.mark.both_ledgers
async def test_keys_need_a_session_not_an_api_key(gw, http) -> None:
    account = await gw.account()
    response = await http.post("/v1/keys", json={"name": "x"}, headers=auth(account.api_key))
    assert_openai_error(response, 401, "invalid_session")
    other = await gw.account()
    listed = (await http.get("/v1/keys", headers=auth(other.session))).json()["data"]
    assert len(listed) == 1  # only the other account's own key
    keys = await gw.store.list_keys(account.wallet)
    response = await http.delete(f"/v1/keys/{keys[0].id}", headers=auth(other.session))
    assert_openai_error(response, 404)


@pytest.mark.both_ledgers
async def test_wallet_sign_in(gw, http) -> None:
    keypair = Keypair()
    wallet = str(keypair.pubkey())
    challenge = (await http.post("/v1/auth/challenge", json={"wallet": wallet})).json()
    message = siws.parse(challenge["message"])  # Sign-In-With-Solana, naming this gateway
    assert message is not None and message.text() == challenge["message"]
    assert message.domain == gw.url.removeprefix("http://") and message.uri == gw.url
    assert (message.address, message.nonce) == (wallet, challenge["nonce"])
    assert (message.version, message.chain_id) == ("1", "localnet")
    issued, expires = (siws.parse_iso(t or "") for t in (message.issued_at,
                                                         message.expiration_time))
    assert issued and expires and expires - issued == 300
    assert challenge["expires_at"] == expires
    forged = sign(Keypair(), challenge["message"].encode())
    login = {"wallet": wallet, "nonce": challenge["nonce"], "signature": forged}
    assert_openai_error(await http.post("/v1/auth/login", json=login), 401)
    # a nonce is single-use, even after a failed attempt
    login["signature"] = sign(keypair, challenge["message"].encode())
    assert_openai_error(await http.post("/v1/auth/login", json=login), 401)
    challenge = (await http.post("/v1/auth/challenge", json={"wallet": wallet})).json()
    login = {"wallet": wallet, "nonce": challenge["nonce"], "message": challenge["message"],
             "signature": sign(keypair, challenge["message"].encode())}
    session = (await http.post("/v1/auth/login", json=login)).json()
    assert session["token"].startswith("nex_sess_") and session["account"] == wallet
    assert_openai_error(await http.post("/v1/auth/login", json=login), 401)  # replay
    assert_openai_error(
        await http.post("/v1/auth/challenge", json={"wallet": "x" * 40}), 400)


@pytest.mark.both_ledgers
async def test_balance_by_key_and_by_session(gw, http) -> None:
    account = await gw.account(credit=1_234_567)
    for credential in (account.api_key, account.session):
        body = (await http.get("/v1/balance", headers=auth(credential))).json()
        assert body["balance"] == 1_234_567
        assert body["balance_display"] == "1.234567"
        assert body["currency"] == "NEXUS" and body["total_spent"] == 0
        assert body["last_updated"] > 0


async def test_models_and_network_stats_follow_workers(gw, http) -> None:
    assert (await http.get("/v1/models")).json() == {"object": "list", "data": []}
    one = await gw.worker(models=["scripted-model", "other-model"], slots=2)
    await gw.worker(models=["scripted-model"], slots=3)
    models = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
    assert set(models) == {"scripted-model", "other-model"}
    scripted = models["scripted-model"]
    assert scripted["object"] == "model" and scripted["owned_by"] == "nexus"
    assert scripted["workers"] == 2 and scripted["context_length"] == 4096
    assert scripted["pricing"]["per_request"] == 1000
    assert models["other-model"]["pricing"]["per_request"] == 100  # the default price
    assert (await http.get("/v1/models/other-model")).json()["id"] == "other-model"
    stats = (await http.get("/v1/network/stats")).json()
    assert stats["workers_online"] == 2 and stats["slots_total"] == 5
    await one.stop()
    await asyncio.sleep(0.2)
    assert [m["id"] for m in (await http.get("/v1/models")).json()["data"]] == ["scripted-model"]
    assert_openai_error(await http.get("/v1/models/other-model"), 404)


async def test_health_metrics_and_openapi(gw, http) -> None:
    account = await gw.account(credit=5000)
    await gw.worker()
    await http.post("/v1/chat/completions", json=CHAT, headers=auth(account.api_key))
    health = await http.get("/health")
    assert health.json() == {"status": "ok", "workers_online": 1}
    metrics = (await http.get("/metrics")).text
    assert "nexus_workers_online 1.0" in metrics
    assert 'nexus_jobs_total{outcome="completed"} 1.0' in metrics
    assert "nexus_credit_settled_base_units_total 1000.0" in metrics
    spec = (await http.get("/openapi.json")).json()
    for path in ("/v1/chat/completions", "/v1/models", "/v1/balance", "/v1/keys",
                 "/v1/auth/challenge", "/v1/auth/login", "/v1/network/stats", "/health",
                 "/metrics"):
        assert path in spec["paths"], path
    assert "ChatCompletionRequest" in json.dumps(spec)


@pytest.mark.both_ledgers
@pytest.mark.parametrize("credential", ["api_key", "session"])
async def test_no_secret_in_error_bodies(gw, http, credential: str) -> None:
    account = await gw.account()
    secret = getattr(account, credential) + "x"
    response = await http.post("/v1/chat/completions", json=CHAT, headers=auth(secret))
    assert secret not in response.text and secret[:20] not in response.text


@pytest.mark.both_ledgers
async def test_tokens_per_minute_limit(gw, http) -> None:
    account = await gw.account(credit=100_000)
    worker = await gw.worker()
    session = {"Authorization": f"Bearer {account.session}"}
    key = (await http.post("/v1/keys", json={"name": "tpm", "tpm": 15},
                           headers=session)).json()["key"]
    first = await http.post("/v1/chat/completions", json=CHAT, headers=auth(key))
    assert first.json()["usage"]["total_tokens"] == worker.prompt_tokens + len(worker.tokens())
    second = await http.post("/v1/chat/completions", json=CHAT, headers=auth(key))
    assert_openai_error(second, 429, "rate_limit_exceeded")
    assert int(second.headers["retry-after"]) >= 1
