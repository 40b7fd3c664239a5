"""Account routes: wallet sign-in, API keys and the credit balance."""

from __future__ import annotations

import secrets
import time
from typing import Any

from fastapi import APIRouter, Request

from nexus_app.gateway.auth import KEY_PREFIX, display_prefix, hash_secret, new_secret
from nexus_app.gateway.errors import NotFound
from nexus_app.gateway.schemas import ChallengeRequest, KeyCreateRequest, LoginRequest
from nexus_app.gateway.service import gateway_of
from nexus_app.gateway.store import ApiKeyRecord
from nexus_app.units import format_units

router = APIRouter()


def _key_view(key: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "prefix": key.prefix,
        "created_at": int(key.created_at),
        "last_used_at": int(key.last_used_at) if key.last_used_at else None,
        "revoked": key.revoked_at is not None,
        "revoked_at": int(key.revoked_at) if key.revoked_at else None,
        "rpm": key.rpm,
        "tpm": key.tpm,
    }


def _key_event(key: ApiKeyRecord) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "prefix": key.prefix}


@router.post("/v1/auth/challenge", tags=["account"])
async def auth_challenge(body: ChallengeRequest, request: Request) -> dict[str, Any]:
    """Start a wallet sign-in: returns the message the wallet must sign."""
    challenge = gateway_of(request).auth.challenge(body.wallet)
    return {
        "wallet": challenge.wallet,
        "nonce": challenge.nonce,
        "message": challenge.message,
        "expires_at": int(challenge.expires_at),
    }


@router.post("/v1/auth/login", tags=["account"])
async def auth_login(body: LoginRequest, request: Request) -> dict[str, Any]:
    """Finish a wallet sign-in with the signed message; returns a short-lived session token."""
    auth = gateway_of(request).auth
    token, expires_at = await auth.login(body.wallet, body.nonce, body.signature)
    return {"token": token, "token_type": "bearer", "expires_at": int(expires_at),
            "account": body.wallet}


@router.get("/v1/balance", tags=["account"])
async def balance(request: Request) -> dict[str, Any]:
    """The credit balance of the key's (or session's) account, in base units: `balance` is
    all that can be spent, `free_credit` the part of it that is this week's free credit."""
    gateway = gateway_of(request)
    caller = await gateway.auth.key_or_session(request.scope, request.headers.get("authorization"))
    await gateway.free_credit.top_up(caller.account)
    account = await gateway.store.balance(caller.account)
    decimals = gateway.settings.token_decimals
    return {
        "account": caller.account,
        "balance": account.available,
        "free_credit": account.free_balance,
        "reserved": account.reserved,
        "total_spent": account.total_spent,
        "currency": "NEXUS",
        "decimals": decimals,
        "balance_display": format_units(account.available, decimals),
        "last_updated": int(account.updated_at) if account.updated_at else None,
    }


@router.post("/v1/keys", tags=["account"])
async def create_key(body: KeyCreateRequest, request: Request) -> dict[str, Any]:
    """Create an API key. The secret is in this response only; store it now."""
    gateway = gateway_of(request)
    caller = await gateway.auth.session(request.scope, request.headers.get("authorization"))
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
    return {**_key_view(record), "key": secret}


@router.get("/v1/keys", tags=["account"])
async def list_keys(request: Request) -> dict[str, Any]:
    """The account's API keys (prefixes only)."""
    gateway = gateway_of(request)
    caller = await gateway.auth.session(request.scope, request.headers.get("authorization"))
    keys = await gateway.store.list_keys(caller.account)
    return {"object": "list", "data": [_key_view(k) for k in keys]}


@router.delete("/v1/keys/{key_id}", tags=["account"])
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    """Revoke an API key; it is refused from this moment on."""
    gateway = gateway_of(request)
    caller = await gateway.auth.session(request.scope, request.headers.get("authorization"))
    now = time.time()
    record = await gateway.store.revoke_key(caller.account, key_id, now)
    if record is None:
        raise NotFound(f"No API key '{key_id}' on this account.", param="key_id")
    gateway.auth.forget_key(record.secret_hash)
    if record.revoked_at == now:  # revoked by this call, not before
        await gateway.webhooks.emit(caller.account, "key.revoked", _key_event(record))
    return _key_view(record)
