"""Async client for the NEXUS gateway's account and network endpoints."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from solders.hash import Hash
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.chain.deposit_tx import DepositIntent, build_deposit
from nexus_app.chain.token_account import build_create_token_account
from nexus_app.chain.wallet import sign
from nexus_app.client.http import ClientError, error_of, unreachable
from nexus_app.client.signin import SignInRefused, check_sign_in
from nexus_app.contracts import (
    ApiKeyList,
    ApiKeyView,
    BalanceView,
    ChallengeView,
    DepositEntryView,
    DepositIntentView,
    DepositList,
    DepositResult,
    EarningsHistory,
    EarningsView,
    FaucetView,
    ModelList,
    ModelView,
    NetworkStats,
    NewApiKey,
    PayoutView,
    SessionToken,
    TokenAccountCheck,
    TokenAccountCreated,
    WalletView,
)

__all__ = ["ClientError", "GatewayClient", "SignInRefused"]

View = TypeVar("View", bound=BaseModel)


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

    async def _request(self, method: str, path: str, json: Any = None,
                       params: dict[str, str] | None = None) -> httpx.Response:
        """The gateway's answer to a call it accepted; a ClientError otherwise."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = await self._http.request(method, path, json=json, params=params,
                                                headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable("the gateway", self.base_url, exc) from None
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_of(response, body)
        return response

    async def _call(self, view: type[View], method: str, path: str, json: Any = None,
                    params: dict[str, str] | None = None) -> View:
        """The gateway's answer parsed as `view` (a ClientError when it is something else)."""
        response = await self._request(method, path, json, params)
        try:
            return view.model_validate_json(response.content)
        except ValidationError:
            raise ClientError(f"the gateway at {self.base_url} answered {method} {path} with "
                              f"something other than a {view.__name__}",
                              response.status_code) from None

    async def sign_in(self, keypair: Keypair) -> str:
        """Wallet sign-in: sign the gateway's Sign-In-With-Solana message, only after checking
        that it names this gateway and wallet (SignInRefused otherwise); keeps and returns
        the session token."""
        wallet = str(keypair.pubkey())
        answer = await self._request("POST", "/v1/auth/challenge", {"wallet": wallet})
        try:
            challenge = ChallengeView.model_validate_json(answer.content)
        except ValidationError:
            raise SignInRefused("the gateway's sign-in challenge has no message and nonce"
                                ) from None
        text = check_sign_in(challenge.message, gateway_url=self.base_url, wallet=wallet,
                             nonce=challenge.nonce).text()
        signature = sign(keypair, text.encode())
        login = await self._call(
            SessionToken, "POST", "/v1/auth/login",
            {"wallet": wallet, "nonce": challenge.nonce, "signature": signature,
             "message": text},
        )
        self.token = login.token
        return login.token

    async def create_key(self, name: str, rpm: int | None = None,
                         tpm: int | None = None) -> NewApiKey:
        """A new API key; `rpm`/`tpm` may only lower the gateway's limits."""
        body: dict[str, Any] = {"name": name}
        body.update({k: v for k, v in (("rpm", rpm), ("tpm", tpm)) if v is not None})
        return await self._call(NewApiKey, "POST", "/v1/keys", body)

    async def list_keys(self) -> list[ApiKeyView]:
        return (await self._call(ApiKeyList, "GET", "/v1/keys")).data

    async def revoke_key(self, key_id: str) -> ApiKeyView:
        return await self._call(ApiKeyView, "DELETE", f"/v1/keys/{key_id}")

    async def balance(self) -> BalanceView:
        return await self._call(BalanceView, "GET", "/v1/balance")

    async def models(self) -> list[ModelView]:
        return (await self._call(ModelList, "GET", "/v1/models")).data

    async def network_stats(self) -> NetworkStats:
        return await self._call(NetworkStats, "GET", "/v1/network/stats")

    async def wallet(self) -> WalletView:
        """The signed-in wallet's on-chain SOL and $NEXUS."""
        return await self._call(WalletView, "GET", "/v1/wallet")

    async def faucet(self, amount: str) -> FaucetView:
        return await self._call(FaucetView, "POST", "/v1/faucet", {"amount": amount})

    async def deposit(self, keypair: Keypair, amount: str) -> DepositResult:
        """Deposit `amount` NEXUS: get an intent, sign the transfer with `keypair`, and let
        the gateway send it and credit it."""
        tx = build_deposit(keypair, await self.deposit_intent(amount))
        return await self.submit_deposit(transaction=base64.b64encode(bytes(tx)).decode())

    async def deposit_intent(self, amount: str) -> DepositIntent:
        """What the transfer of a deposit needs (the chain's view of the gateway's intent)."""
        view = await self._call(DepositIntentView, "GET", "/v1/deposits/intent",
                                params={"amount": amount})
        return DepositIntent.from_json(view.model_dump())

    async def submit_deposit(self, *, transaction: str | None = None,
                             signature: str | None = None) -> DepositResult:
        """Post a signed deposit transaction (base64) or the signature of a sent one."""
        body = {"transaction": transaction} if transaction else {"signature": signature}
        return await self._call(DepositResult, "POST", "/v1/deposits", body)

    async def deposits(self) -> list[DepositEntryView]:
        return (await self._call(DepositList, "GET", "/v1/deposits")).data

    async def claim(self, keypair: Keypair | None = None) -> PayoutView:
        """Pay this wallet's worker earnings to it on chain (needs a wallet sign-in). With the
        wallet's `keypair`, first create its token account if missing (with its own SOL): the
        gateway pays only into an existing one."""
        if keypair is not None:
            await self.create_token_account(keypair)
        return await self._call(PayoutView, "POST", "/v1/workers/claim")

    async def token_account(self) -> TokenAccountCheck:
        """The wallet's $NEXUS token account: its address, whether it exists, a blockhash."""
        return await self._call(TokenAccountCheck, "GET", "/v1/workers/token-account")

    async def create_token_account(self, keypair: Keypair
                                   ) -> TokenAccountCheck | TokenAccountCreated:
        """Create the wallet's associated token account unless it exists, paid and signed by
        `keypair` (the signed-in wallet), relayed by the gateway."""
        status = await self.token_account()
        if status.exists:
            return status
        tx = build_create_token_account(keypair, Pubkey.from_string(status.mint),
                                        Hash.from_string(status.recent_blockhash))
        return await self._call(
            TokenAccountCreated, "POST", "/v1/workers/token-account",
            {"transaction": base64.b64encode(bytes(tx)).decode()},
        )

    async def worker_earnings(self) -> EarningsView:
        return await self._call(EarningsView, "GET", "/v1/workers/me")

    async def earnings_history(self, hours: int = 24) -> EarningsHistory:
        """This wallet's worker earnings by hour over the last `hours` hours."""
        return await self._call(EarningsHistory, "GET", "/v1/workers/me/earnings",
                                params={"hours": str(hours)})
