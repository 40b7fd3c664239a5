"""Routes of worker earnings: the caller's earnings, its token account and payout claims
(the money that goes out on chain)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from solders.pubkey import Pubkey

from nexus_app.addresses import is_valid_address
from nexus_app.gateway.api.deps import gateway_of
from nexus_app.gateway.api.schemas import TokenAccountCreate
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.ledger.records import Payout, PayoutStatus
from nexus_app.gateway.money.token_accounts import TokenAccounts
from nexus_app.gateway.service import Gateway
from nexus_app.units import format_units

router = APIRouter()


def _display(gateway: Gateway, amount: int) -> str:
    return format_units(amount, gateway.settings.token_decimals)


@router.post("/v1/workers/claim", tags=["workers"], response_model=None)
async def claim(request: Request) -> JSONResponse:
    """Pay the worker wallet's unpaid earnings to its associated token account, which must
    exist (400 token_account_missing: create it first, see /v1/workers/token-account), when
    they are at least the minimum payout (409 below_min_payout). Needs a wallet sign-in
    session: the wallet itself must ask. 202 while the transfer is unconfirmed."""
    gateway = gateway_of(request)
    caller = await gateway.auth.session(request.scope, request.headers.get("authorization"))
    payout = await gateway.payouts.claim(caller.account)
    gateway.coordinator.earnings_changed.add(caller.account)
    return JSONResponse(_payout_view(gateway, payout),
                        status_code=200 if payout.status == PayoutStatus.PAID else 202)


@router.get("/v1/workers/token-account", tags=["workers"])
async def token_account(request: Request) -> dict[str, Any]:
    """The caller's associated token account for the $NEXUS mint, whether it exists, and a
    recent blockhash to create it with. Payouts go only into an existing one, created with the
    wallet's own SOL (the treasury pays no worker's account rent)."""
    gateway = gateway_of(request)
    caller = await gateway.auth.key_or_session(request.scope, request.headers.get("authorization"))
    if not is_valid_address(caller.account):
        raise BadRequest("This account is not a Solana wallet.")
    status = await TokenAccounts(gateway.chain, gateway.treasury).status(caller.account)
    return {**_token_account_view(gateway, caller.account, status.address, status.exists),
            "recent_blockhash": status.recent_blockhash}


@router.post("/v1/workers/token-account", tags=["workers"])
async def create_token_account(body: TokenAccountCreate, request: Request) -> dict[str, Any]:
    """Relay the caller's signed transaction that creates its own associated token account,
    paid by the caller (one idempotent create instruction, nothing else; on the local chain
    the faucet gives the wallet SOL for it). Needs the wallet's sign-in session."""
    gateway = gateway_of(request)
    caller = await gateway.auth.session(request.scope, request.headers.get("authorization"))
    accounts = TokenAccounts(gateway.chain, gateway.treasury)
    signature = await accounts.create(caller.account, body.transaction)
    view = _token_account_view(gateway, caller.account, accounts.address_of(caller.account), True)
    return {**view, "signature": signature}


def _token_account_view(gateway: Gateway, wallet: str, address: Pubkey,
                        exists: bool) -> dict[str, Any]:
    return {"object": "token_account", "wallet": wallet, "chain": gateway.chain.name,
            "mint": str(gateway.treasury.mint), "token_account": str(address),
            "exists": exists}


def _payout_view(gateway: Gateway, payout: Payout) -> dict[str, Any]:
    return {
        "object": "payout",
        "id": payout.id,
        "wallet": payout.wallet,
        "amount": payout.amount,
        "amount_display": _display(gateway, payout.amount),
        "status": payout.status,
        "signature": payout.signature,
        "created_at": int(payout.created_at),
    }


@router.get("/v1/workers/me", tags=["workers"])
async def worker_me(request: Request) -> dict[str, Any]:
    """The caller's worker earnings: earned, paid, being paid, pending; recent payouts."""
    gateway = gateway_of(request)
    caller = await gateway.auth.key_or_session(request.scope, request.headers.get("authorization"))
    earnings = await gateway.store.worker_earnings(caller.account)
    payouts = await gateway.store.payouts(caller.account, 20)
    amounts = {"earned": earnings.earned, "paid": earnings.paid, "paying": earnings.paying,
               "pending": earnings.pending}
    claimable_from = gateway.payouts.claimable_from(earnings)
    return {
        "object": "worker",
        "wallet": caller.account,
        **amounts,
        **{f"{name}_display": _display(gateway, value) for name, value in amounts.items()},
        "claimable_from": None if claimable_from is None else math.ceil(claimable_from),
        "min_payout": gateway.payouts.min_payout,
        "min_payout_display": _display(gateway, gateway.payouts.min_payout),
        "state": gateway.coordinator.health.state(caller.account) or "ok",
        "decimals": gateway.settings.token_decimals,
        "payouts": [_payout_view(gateway, p) for p in payouts],
    }
