"""Account routes: wallet sign-in, API keys and the credit balance."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Request

from nexus_app.contracts import (
    ApiKeyList,
    ApiKeyView,
    BalanceView,
    ChallengeView,
    NewApiKey,
    SessionToken,
)
from nexus_app.gateway.api.deps import GatewayDep, KeyOrSessionCaller, SessionCaller
from nexus_app.gateway.api.schemas import ChallengeRequest, KeyCreateRequest, LoginRequest
from nexus_app.gateway.errors import BadRequest, NotFound
from nexus_app.gateway.http.auth import (
    KEY_PREFIX,
    Authenticator,
    display_prefix,
    hash_secret,
    new_secret,
)
from nexus_app.gateway.ledger.records import ApiKeyRecord

router = APIRouter()


def _key_view(key: ApiKeyRecord, auth: Authenticator) -> ApiKeyView:
    """A key as listed; `rpm`/`tpm` are the limits it really gets (null: the gateway's)."""
    rpm, tpm = auth.key_limits(key)
    return ApiKeyView(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=int(key.created_at),
        last_used_at=int(key.last_used_at) if key.last_used_at else None,
        revoked=key.revoked_at is not None,
        revoked_at=int(key.revoked_at) if key.revoked_at else None,
        rpm=rpm if key.rpm else None,
        tpm=tpm if key.tpm else None,
    )


def _key_event(key: ApiKeyRecord) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "prefix": key.prefix}


@router.post("/v1/auth/challenge", tags=["account"])
async def auth_challenge(body: ChallengeRequest, request: Request,
                         gateway: GatewayDep) -> ChallengeView:
    """Start a wallet sign-in: returns the Sign-In-With-Solana message the wallet must sign,
    naming this gateway (clients refuse to sign one that names another)."""
    challenge = await gateway.auth.challenge(request.scope, body.wallet)
    return ChallengeView(wallet=challenge.wallet, nonce=challenge.nonce,
                           message=challenge.message, expires_at=int(challenge.expires_at))


@router.post("/v1/auth/login", tags=["account"])
async def auth_login(body: LoginRequest, request: Request, gateway: GatewayDep) -> SessionToken:
    """Finish a wallet sign-in with the signed message; returns a short-lived session token."""
    token, expires_at = await gateway.auth.login(request.scope, body.wallet, body.nonce,
                                                 body.signature, body.message)
    return SessionToken(token=token, expires_at=int(expires_at), account=body.wallet)


@router.get("/v1/balance", tags=["account"])
async def balance(caller: KeyOrSessionCaller, gateway: GatewayDep) -> BalanceView:
    """The credit balance of the key's (or session's) account, in base units: `balance` is
    all that can be spent, `free_credit` the part of it that is this week's free credit."""
    await gateway.free_credit.top_up(caller.account)
    account = await gateway.store.balance(caller.account)
    decimals = gateway.settings.token_decimals
    return BalanceView(
        account=caller.account,
        balance=account.available,
        free_credit=account.free_balance,
        reserved=account.reserved,
        total_spent=account.total_spent,
        decimals=decimals,
        balance_display=gateway.display(account.available),
        last_updated=int(account.updated_at) if account.updated_at else None,
    )


@router.post("/v1/keys", tags=["account"])
async def create_key(body: KeyCreateRequest, caller: SessionCaller,
                     gateway: GatewayDep) -> NewApiKey:
    """Create an API key. The secret is in this response only; store it now."""
    _check_key_limits(body, gateway.auth)
    secret = new_secret(KEY_PREFIX)
    record = ApiKeyRecord(
        id="key_" + secrets.token_hex(8),
        account=caller.account,
        name=body.name,
        prefix=display_prefix(secret),
        secret_hash=hash_secret(secret),
        created_at=time.time(),
        rpm=body.rpm,
        tpm=body.tpm,
    )
    await gateway.store.add_key(record)
    await gateway.webhooks.emit(caller.account, "key.created", _key_event(record))
    return NewApiKey(**_key_view(record, gateway.auth).model_dump(), key=secret)


def _check_key_limits(body: KeyCreateRequest, auth: Authenticator) -> None:
    """A key may only lower the operator's limits, never raise them."""
    for param, asked, most, unit in (("rpm", body.rpm, auth.rpm, "requests"),
                                     ("tpm", body.tpm, auth.tpm, "tokens")):
        if asked is not None and asked > most:
            raise BadRequest(
                f"'{param}' may only lower this gateway's limit: at most {most} {unit} per "
                f"minute (leave it out to get {most}).", param=param, code="limit_too_high",
            )


@router.get("/v1/keys", tags=["account"])
async def list_keys(caller: SessionCaller, gateway: GatewayDep) -> ApiKeyList:
    """The account's API keys (prefixes only)."""
    keys = await gateway.store.list_keys(caller.account)
    return ApiKeyList(data=[_key_view(k, gateway.auth) for k in keys])


@router.delete("/v1/keys/{key_id}", tags=["account"])
async def revoke_key(key_id: str, caller: SessionCaller, gateway: GatewayDep) -> ApiKeyView:
    """Revoke an API key; it is refused from this moment on, and the conversations stored
    with it (sealed under it) are deleted."""
    now = time.time()
    record = await gateway.store.revoke_key(caller.account, key_id, now)
    if record is None:
        raise NotFound(f"No API key '{key_id}' on this account.", param="key_id")
    await gateway.auth.revoked(record.secret_hash)
    # its conversations were sealed under it: no one can read them again
    await gateway.store.delete_key_conversations(record.id)
    if record.revoked_at == now:  # revoked by this call, not before
        await gateway.webhooks.emit(caller.account, "key.revoked", _key_event(record))
    return _key_view(record, gateway.auth)
