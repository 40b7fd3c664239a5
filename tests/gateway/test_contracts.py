"""The NEXUS routes' response bodies (nexus_app/contracts.py) as the gateway answers them, as
its OpenAPI description documents them and as the client parses them; and the credential
checked, as a route dependency, before the query and body."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from solders.keypair import Keypair

from nexus_app import contracts
from nexus_app.client.chat import ChatClient
from nexus_app.client.gateway import ClientError, GatewayClient, SignInRefused
from tests.support.asgi import serving
from tests.support.gateways import auth

# operation -> the contract of its 200 body
DOCUMENTED = {
    "POST /v1/auth/challenge": contracts.ChallengeView,
    "POST /v1/auth/login": contracts.SessionToken,
    "GET /v1/balance": contracts.BalanceView,
    "GET /v1/keys": contracts.ApiKeyList,
    "POST /v1/keys": contracts.NewApiKey,
    "DELETE /v1/keys/{key_id}": contracts.ApiKeyView,
    "GET /v1/deposits/intent": contracts.DepositIntentView,
    "POST /v1/deposits": contracts.DepositResult,
    "GET /v1/deposits": contracts.DepositList,
    "POST /v1/faucet": contracts.FaucetView,
    "GET /v1/wallet": contracts.WalletView,
    "POST /v1/workers/claim": contracts.PayoutView,
    "GET /v1/workers/token-account": contracts.TokenAccountCheck,
    "POST /v1/workers/token-account": contracts.TokenAccountCreated,
    "GET /v1/workers/me": contracts.EarningsView,
    "GET /v1/workers/me/earnings": contracts.EarningsHistory,
    "GET /v1/models": contracts.ModelList,
    "GET /v1/models/{model_id}": contracts.ModelView,
    "GET /v1/network/stats": contracts.NetworkStats,
    "POST /v1/webhooks": contracts.NewWebhook,
    "GET /v1/webhooks": contracts.WebhookList,
    "DELETE /v1/webhooks/{webhook_id}": contracts.WebhookDeleted,
    "GET /v1/webhooks/{webhook_id}/deliveries": contracts.WebhookDeliveryList,
    "GET /v1/gateway/proof": contracts.GatewayProof,
}


async def test_the_description_documents_each_body_with_its_contract(http) -> None:
    spec = (await http.get("/openapi.json")).json()
    for operation, model in DOCUMENTED.items():
        method, path = operation.split(" ")
        responses = spec["paths"][path][method.lower()]["responses"]
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}, operation
        if operation in ("POST /v1/deposits", "POST /v1/workers/claim"):
            assert responses["202"]["content"]["application/json"]["schema"] == schema
    balance = spec["components"]["schemas"]["BalanceView"]
    assert balance["required"] == list(contracts.BalanceView.model_fields)  # all, defaults too


async def test_the_bodies_have_the_contracts_keys_in_order(gw, http) -> None:
    account = await gw.account(credit=5000)
    await gw.worker()
    session = auth(account.session)
    answers = {
        contracts.BalanceView: await http.get("/v1/balance", headers=auth(account.api_key)),
        contracts.NewApiKey: await http.post("/v1/keys", json={"name": "x"}, headers=session),
        contracts.ApiKeyList: await http.get("/v1/keys", headers=session),
        contracts.ModelList: await http.get("/v1/models"),
        contracts.NetworkStats: await http.get("/v1/network/stats"),
        contracts.EarningsView: await http.get("/v1/workers/me", headers=session),
    }
    for model, response in answers.items():
        assert response.status_code == 200, response.text
        body = orjson.loads(response.content)
        assert list(body) == list(model.model_fields), model.__name__
        assert model.model_validate(body).model_dump(mode="json") == body
    [listed_key, _] = answers[contracts.ApiKeyList].json()["data"]
    assert list(listed_key) == list(contracts.ApiKeyView.model_fields)
    [model_body] = answers[contracts.ModelList].json()["data"]
    assert list(model_body["pricing"]) == list(contracts.ModelPricing.model_fields)
    assert isinstance(answers[contracts.NetworkStats].json()["tokens_per_s"], float)


async def test_the_credential_is_checked_before_the_query_and_the_body(gw, http) -> None:
    """Like the inference routes, a NEXUS route refuses a missing or wrong credential before
    it reads its parameters; with a good one, a bad parameter is a 400 naming it."""
    account = await gw.account()
    intent = await http.get("/v1/deposits/intent")
    assert intent.status_code == 401 and intent.json()["error"]["code"] == "missing_api_key"
    intent = await http.get("/v1/deposits/intent", headers=auth(account.api_key))
    assert intent.status_code == 400 and intent.json()["error"]["param"] == "query.amount"
    by_key = await http.post("/v1/keys", json={"name": ""}, headers=auth(account.api_key))
    assert by_key.status_code == 401  # keys are managed with the wallet's session only
    by_session = await http.post("/v1/keys", json={"name": ""}, headers=auth(account.session))
    assert by_session.status_code == 400 and by_session.json()["error"]["param"] == "name"
    not_json = await http.post("/v1/keys", content=b"{nope",
                               headers={"content-type": "application/json"})
    assert not_json.status_code == 400  # a body that is not JSON is refused first


async def _impostor(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A server that answers every request 200 with JSON of no NEXUS shape."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"hello": "world"}'})


async def test_the_client_returns_contracts_and_refuses_other_answers(gw) -> None:
    account = await gw.account(credit=5000)
    async with GatewayClient(gw.url, token=account.session) as client:
        balance = await client.balance()
        assert isinstance(balance, contracts.BalanceView) and balance.balance == 5000
        [key] = await client.list_keys()
        assert (key.object, key.name, key.revoked) == ("api_key", "test", False)
        revoked = await client.revoke_key(key.id)
        assert revoked.revoked and revoked.revoked_at is not None
    chat = ChatClient(gw.url, (await gw.account(credit=7)).api_key)
    assert (await chat.balance()).balance == 7
    await chat.aclose()

    async with serving(_impostor) as url:
        async with GatewayClient(url, token="nex_sess_x") as client:
            with pytest.raises(ClientError, match="other than a BalanceView") as odd:
                await client.balance()
            assert odd.value.status == 200
            with pytest.raises(SignInRefused, match="no message and nonce"):
                await client.sign_in(Keypair())
        impostor_chat = ChatClient(url, "nex_live_x")
        with pytest.raises(ClientError, match="did not return a NEXUS balance"):
            await impostor_chat.balance()
        await impostor_chat.aclose()
