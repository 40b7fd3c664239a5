"""Async client for the NEXUS gateway's account and network endpoints."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain.deposits import DepositIntent, build_deposit
from nexus_app.chain.token_account import build_create_token_account
from nexus_app.chain.wallet import sign
from nexus_app.client.http import ClientError, error_of, unreachable
from nexus_app.client.signin import SignInRefused, check_sign_in

__all__ = ["ClientError", "GatewayClient", "SignInRefused"]


class GatewayClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, json: Any = None,
                    params: dict[str, str] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(method, path, json=json, params=params,
                                                headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable("the gateway", self.base_url, exc) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            raise error_of(response, body)
        return body

    async def sign_in(self, keypair: Keypair) -> str:
        """Wallet sign-in: sign the gateway's Sign-In-With-Solana message, only after checking
        that it names this gateway and wallet (SignInRefused otherwise); keeps and returns
        the session token."""
        wallet = str(keypair.pubkey())
        challenge = await self._call("POST", "/v1/auth/challenge", {"wallet": wallet})
        if not isinstance(challenge, dict) or not all(
            isinstance(challenge.get(field), str) for field in ("message", "nonce")
        ):
            raise SignInRefused("the gateway's sign-in challenge has no message and nonce")
        text = check_sign_in(challenge["message"], gateway_url=self.base_url, wallet=wallet,
                             nonce=challenge["nonce"]).text()
        signature = sign(keypair, text.encode())
        login = await self._call(
            "POST", "/v1/auth/login",
            {"wallet": wallet, "nonce": challenge["nonce"], "signature": signature,
             "message": text},
        )
        self.token = login["token"]
        return str(self.token)

    async def create_key(self, name: str, rpm: int | None = None,
                         tpm: int | None = None) -> dict[str, Any]:
        """A new API key; `rpm`/`tpm` may only lower the gateway's limits."""
        body: dict[str, Any] = {"name": name}
        body.update({k: v for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None})
        return await self._call("POST", "/v1/keys", body)  # type: ignore[no-any-return]

    async def list_keys(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/v1/keys"))["data"]  # type: ignore[no-any-return]

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        return await self._call("DELETE", f"/v1/keys/{key_id}")  # type: ignore[no-any-return]

    async def balance(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/balance")  # type: ignore[no-any-return]

    async def models(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/v1/models"))["data"]  # type: ignore[no-any-return]

    async def network_stats(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/network/stats")  # type: ignore[no-any-return]

    async def wallet(self) -> dict[str, Any]:
        """The signed-in wallet's on-chain SOL and $NEXUS."""
        return await self._call("GET", "/v1/wallet")  # type: ignore[no-any-return]

    async def faucet(self, amount: str) -> dict[str, Any]:
        return await self._call(  # type: ignore[no-any-return]
            "POST", "/v1/faucet", {"amount": amount}
        )

    async def deposit(self, keypair: Keypair, amount: str) -> dict[str, Any]:
        """Deposit `amount` NEXUS: get an intent, sign the transfer with `keypair`, and let
        the gateway send it and credit it."""
        tx = build_deposit(keypair, await self.deposit_intent(amount))
        return await self.submit_deposit(transaction=base64.b64encode(bytes(tx)).decode())

    async def deposit_intent(self, amount: str) -> DepositIntent:
        body = await self._call("GET", "/v1/deposits/intent", params={"amount": amount})
        return DepositIntent.from_json(body)

    async def submit_deposit(self, *, transaction: str | None = None,
                             signature: str | None = None) -> dict[str, Any]:
        """Post a signed deposit transaction (base64) or the signature of a sent one."""
        body = {"transaction": transaction} if transaction else {"signature": signature}
        return await self._call("POST", "/v1/deposits", body)  # type: ignore[no-any-return]

    async def deposits(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/v1/deposits"))["data"]  # type: ignore[no-any-return]

    async def claim(self, keypair: Keypair | None = None) -> dict[str, Any]:
        """Pay this wallet's worker earnings to it on chain (needs a wallet sign-in). With the
        wallet's `keypair`, first create its token account if missing (with its own SOL): the
        gateway pays only into an existing one."""
        if keypair is not None:
            await self.create_token_account(keypair)
        return await self._call("POST", "/v1/workers/claim")  # type: ignore[no-any-return]

    async def token_account(self) -> dict[str, Any]:
        """The wallet's $NEXUS token account: its address, whether it exists, a blockhash."""
        return await self._call(  # type: ignore[no-any-return]
            "GET", "/v1/workers/token-account"
        )

    async def create_token_account(self, keypair: Keypair) -> dict[str, Any]:
        """Create the wallet's associated token account unless it exists, paid and signed by
        `keypair` (the signed-in wallet), relayed by the gateway."""
        status = await self.token_account()
        if status["exists"]:
            return status
        tx = build_create_token_account(keypair, Pubkey.from_string(status["mint"]),
                                        Hash.from_string(status["recent_blockhash"]))
        return await self._call(  # type: ignore[no-any-return]
            "POST", "/v1/workers/token-account",
            {"transaction": base64.b64encode(bytes(tx)).decode()},
        )

    async def worker_earnings(self) -> dict[str, Any]:
        return await self._call("GET", "/v1/workers/me")  # type: ignore[no-any-return]
