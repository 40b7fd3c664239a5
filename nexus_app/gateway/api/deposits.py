"""Routes of the money that comes in on chain: deposits, the dev faucet and the caller's
wallet (worker earnings and their payouts are in `earnings.py`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Response
from solders.pubkey import Pubkey

from nexus_app.addresses import is_valid_address
from nexus_app.chain import token
from nexus_app.contracts import (
    DepositEntryView,
    DepositIntentView,
    DepositList,
    DepositResult,
    DepositState,
    DepositView,
    FaucetView,
    WalletView,
)
from nexus_app.gateway.api.deps import GatewayDep, KeyOrSessionCaller
from nexus_app.gateway.api.schemas import DepositSubmit, FaucetRequest
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.ledger.records import DepositEntry, DepositIntentRecord
from nexus_app.gateway.service import Gateway
from nexus_app.units import AmountError, to_base_units

router = APIRouter()


def _amount(gateway: Gateway, value: str | int) -> int:
    try:
        return to_base_units(value, gateway.settings.token_decimals)
    except AmountError as exc:
        raise BadRequest(f"Invalid 'amount': {exc}.", param="amount") from None


@router.get("/v1/deposits/intent", tags=["deposits"])
async def deposit_intent(
    caller: KeyOrSessionCaller, gateway: GatewayDep,
    amount: str = Query(description="NEXUS to deposit, e.g. 25 or 0.5"),
) -> DepositIntentView:
    """Start a deposit: the treasury token account, a fresh reference key and a recent
    blockhash. Send a TransferChecked of exactly `amount` from your associated token account
    to `treasury`, with `reference` as an extra read-only key and the memo. An account holds
    at most `deposit_intents_per_account` open (unexpired, unpaid) intents: 429 with
    Retry-After beyond that."""
    units = _amount(gateway, amount)
    intent, blockhash = await gateway.deposits.new_intent(caller.account, units)
    treasury = gateway.treasury
    return DepositIntentView(
        id=intent.id,
        chain=gateway.chain.name,
        mint=str(treasury.mint),
        decimals=treasury.decimals,
        token_program=str(token.TOKEN_PROGRAM_ID),
        treasury=str(treasury.token_account),
        reference=intent.reference,
        recent_blockhash=blockhash,
        memo=intent.memo,
        amount=intent.amount,
        amount_display=gateway.display(intent.amount),
        expires_at=int(intent.expires_at),
    )


@router.post("/v1/deposits", tags=["deposits"])
async def submit_deposit(body: DepositSubmit, caller: KeyOrSessionCaller, gateway: GatewayDep,
                         response: Response) -> DepositResult:
    """Credit a deposit: `transaction` (base64, signed; the gateway sends it) or `signature`
    (of one you sent). Credited once per signature, only after the chain processed it.
    202 when the chain has not confirmed it yet (it is credited when it does)."""
    if body.transaction is not None:
        outcome = await gateway.deposits.submit_transaction(caller.account, body.transaction)
    else:
        assert body.signature is not None
        outcome = await gateway.deposits.submit_signature(caller.account, body.signature)
    balance = await gateway.store.balance(caller.account)
    response.status_code = 200 if outcome.credited else 202
    view = _deposit_view(gateway, outcome.intent, "credited" if outcome.credited else "pending",
                         outcome.signature)
    return DepositResult(**view.model_dump(), already_credited=outcome.already_credited,
                         balance=balance.available,
                         balance_display=gateway.display(balance.available))


def _deposit_view(gateway: Gateway, intent: DepositIntentRecord, status: DepositState,
                  signature: str | None) -> DepositView:
    return DepositView(
        id=intent.id,
        reference=intent.reference,
        amount=intent.amount,
        amount_display=gateway.display(intent.amount),
        memo=intent.memo,
        status=status,
        signature=signature,
        created_at=int(intent.created_at),
    )


@router.get("/v1/deposits", tags=["deposits"])
async def deposit_history(
    caller: KeyOrSessionCaller, gateway: GatewayDep, limit: int = Query(50, ge=1, le=500),
) -> DepositList:
    """The account's deposit intents, newest first, with their status (pending, credited,
    expired) and the signature that paid them."""
    entries = await gateway.store.deposit_history(caller.account, limit)
    return DepositList(data=[_entry_view(gateway, e) for e in entries])


def _entry_view(gateway: Gateway, entry: DepositEntry) -> DepositEntryView:
    view = _deposit_view(gateway, entry.intent, entry.status(time.time()), entry.signature)
    return DepositEntryView(**view.model_dump(),
                            credited_at=int(entry.credited_at) if entry.credited_at else None)


@router.post("/v1/faucet", tags=["deposits"])
async def faucet(body: FaucetRequest, caller: KeyOrSessionCaller,
                 gateway: GatewayDep) -> FaucetView:
    """Mint test $NEXUS (and SOL for fees) to a wallet. Local chain only."""
    wallet = body.wallet or caller.account
    if not is_valid_address(wallet):
        raise BadRequest("'wallet' is not a Solana address.", param="wallet")
    units = _amount(gateway, body.amount)
    signature = await gateway.deposits.faucet(Pubkey.from_string(wallet), units)
    return FaucetView(wallet=wallet, amount=units, amount_display=gateway.display(units),
                      signature=signature)


@router.get("/v1/wallet", tags=["deposits"])
async def wallet(caller: KeyOrSessionCaller, gateway: GatewayDep) -> WalletView:
    """The caller's wallet on chain: SOL (lamports) and $NEXUS in its associated token
    account."""
    if not is_valid_address(caller.account):
        raise BadRequest("This account is not a Solana wallet.")
    owner = Pubkey.from_string(caller.account)
    token_account = token.associated_token_address(owner, gateway.treasury.mint)
    deposits = gateway.deposits
    sol = await deposits.chain_call(gateway.chain.sol_balance(owner))
    nexus = await deposits.chain_call(gateway.chain.token_balance(token_account))
    return WalletView(
        address=caller.account,
        chain=gateway.chain.name,
        mint=str(gateway.treasury.mint),
        decimals=gateway.treasury.decimals,
        token_account=str(token_account),
        sol_lamports=sol,
        nexus=nexus,
        nexus_display=gateway.display(nexus),
    )
