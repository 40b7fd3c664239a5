"""First end-to-end check: a scripted worker answers a chat through the gateway."""

from tests.support.gateways import RunningGateway, auth


async def test_chat_roundtrip(gw: RunningGateway, http) -> None:
    account = await gw.account(credit=10_000)
    worker = await gw.worker()
    response = await http.post(
        "/v1/chat/completions",
        headers=auth(account.api_key),
        json={"model": "scripted-model", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == worker.reply
    assert (await gw.store.balance(account.wallet)).balance == 9_000
    await worker.stop()
