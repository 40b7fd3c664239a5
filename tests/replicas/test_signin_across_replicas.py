"""Wallet sign-in through a balancer: the challenge from one replica, the login at another,
and the signed message good for one login across all of them."""

from __future__ import annotations

import httpx
from solders.keypair import Keypair

from nexus_app.chain.wallet import sign
from tests.support.gateways import RunningGateway


async def test_a_challenge_from_a_logs_in_at_b_once(pair: list[RunningGateway]) -> None:
    a, b = pair
    keypair = Keypair()
    wallet = str(keypair.pubkey())
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{a.url}/v1/auth/challenge", json={"wallet": wallet})
        challenge = answer.json()
        login = {"wallet": wallet, "nonce": challenge["nonce"], "message": challenge["message"],
                 "signature": sign(keypair, challenge["message"].encode())}
        first = await http.post(f"{b.url}/v1/auth/login", json=login)
        assert first.status_code == 200 and first.json()["account"] == wallet
        for replica in (a, b):  # replayed: refused everywhere, the issuer too
            again = await http.post(f"{replica.url}/v1/auth/login", json=login)
            assert again.status_code == 401
            assert again.json()["error"]["code"] == "invalid_challenge"
