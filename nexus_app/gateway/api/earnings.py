"""Routes of worker earnings: the caller's earnings, its token account and payout claims
(the money that goes out on chain)."""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, Query, Response
from solders.pubkey import Pubkey

from nexus_app.addresses import is_valid_address
from nexus_app.contracts import (
    EarningsHistory,
    EarningsHour,
    EarningsView,
    PayoutView,
    TokenAccountCheck,
    TokenAccountCreated,
    TokenAccountView,
)
from nexus_app.gateway.api.deps import GatewayDep, KeyOrSessionCaller, SessionCaller
from nexus_app.gateway.api.schemas import TokenAccountCreate
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.ledger.records import Payout, PayoutStatus
from nexus_app.gateway.money.token_accounts import TokenAccounts
from nexus_app.gateway.service import Gateway

router = APIRouter()


@router.post("/v1/workers/claim", tags=["workers"])
async def claim(caller: SessionCaller, gateway: GatewayDep, response: Response) -> PayoutView:
    """Pay the worker wallet's unpaid earnings to its associated token account, which must
    exist (400 token_account_missing: create it first, see /v1/workers/token-account), when
    they are at least the minimum payout (409 below_min_payout). Needs a wallet sign-in
    session: the wallet itself must ask. 202 while the transfer is unconfirmed."""
    payout = await gateway.payouts.claim(caller.account)
    gateway.coordinator.earnings_changed.add(caller.account)
    response.status_code = 200 if payout.status == PayoutStatus.PAID else 202
    return _payout_view(gateway, payout)


@router.get("/v1/workers/token-account", tags=["workers"])
async def token_account(caller: KeyOrSessionCaller, gateway: GatewayDep) -> TokenAccountCheck:
    """The caller's associated token account for the $NEXUS mint, whether it exists, and a
    recent blockhash to create it with. Payouts go only into an existing one, created with the
    wallet's own SOL (the treasury pays no worker's account rent)."""
    if not is_valid_address(caller.account):
        raise BadRequest("This account is not a Solana wallet.")
    status = await TokenAccounts(gateway.chain, gateway.treasury).status(caller.account)
    view = _token_account_view(gateway, caller.account, status.address, status.exists)
    return TokenAccountCheck(**view.model_dump(), recent_blockhash=status.recent_blockhash)


@router.post("/v1/workers/token-account", tags=["workers"])
async def create_token_account(body: TokenAccountCreate, caller: SessionCaller,
                               gateway: GatewayDep) -> TokenAccountCreated:
    """Relay the caller's signed transaction that creates its own associated token account,
    paid by the caller (one idempotent create instruction, nothing else; on the local chain
    the faucet gives the wallet SOL for it). Needs the wallet's sign-in session."""
    accounts = TokenAccounts(gateway.chain, gateway.treasury)
    signature = await accounts.create(caller.account, body.transaction)
    view = _token_account_view(gateway, caller.account, accounts.address_of(caller.account), True)
    return TokenAccountCreated(**view.model_dump(), signature=signature)


def _token_account_view(gateway: Gateway, wallet: str, address: Pubkey,
                        exists: bool) -> TokenAccountView:
    return TokenAccountView(wallet=wallet, chain=gateway.chain.name,
                            mint=str(gateway.treasury.mint), token_account=str(address),
                            exists=exists)


def _payout_view(gateway: Gateway, payout: Payout) -> PayoutView:
    return PayoutView(
        id=payout.id,
        wallet=payout.wallet,
        amount=payout.amount,
        amount_display=gateway.display(payout.amount),
        status=payout.status,
        signature=payout.signature,
        created_at=int(payout.created_at),
    )


@router.get("/v1/workers/me", tags=["workers"])
async def worker_me(caller: KeyOrSessionCaller, gateway: GatewayDep) -> EarningsView:
    """The caller's worker earnings: earned, paid, being paid, pending; recent payouts."""
    earnings = await gateway.store.worker_earnings(caller.account)
    payouts = await gateway.store.payouts(caller.account, 20)
    claimable_from = gateway.payouts.claimable_from(earnings)
    min_payout = gateway.payouts.min_payout
    return EarningsView(
        wallet=caller.account,
        earned=earnings.earned,
        paid=earnings.paid,
        paying=earnings.paying,
        pending=earnings.pending,
        earned_display=gateway.display(earnings.earned),
        paid_display=gateway.display(earnings.paid),
        paying_display=gateway.display(earnings.paying),
        pending_display=gateway.display(earnings.pending),
        claimable_from=None if claimable_from is None else math.ceil(claimable_from),
        min_payout=min_payout,
        min_payout_display=gateway.display(min_payout),
        state=gateway.coordinator.health.state(caller.account) or "ok",
        decimals=gateway.settings.token_decimals,
        payouts=[_payout_view(gateway, p) for p in payouts],
    )


HOUR_S = 3600
MAX_HISTORY_HOURS = 24 * 31


@router.get("/v1/workers/me/earnings", tags=["workers"])
async def worker_earnings_by_hour(
    caller: KeyOrSessionCaller, gateway: GatewayDep,
    hours: int = Query(24, ge=1, le=MAX_HISTORY_HOURS,
                       description="how many hours back, the current one included"),
) -> EarningsHistory:
    """The caller's worker earnings by hour (UTC hours, only those with any, oldest first),
    with the jobs paid in each, from the ledger."""
    since = (int(time.time()) // HOUR_S - hours + 1) * HOUR_S
    rows = await gateway.store.earnings_by_hour(caller.account, since)
    return EarningsHistory(
        wallet=caller.account, since=since, decimals=gateway.settings.token_decimals,
        data=[EarningsHour(hour=hour, earned=amount, earned_display=gateway.display(amount),
                           jobs=jobs) for hour, amount, jobs in rows],
    )
