"""The command line's account commands (`nexus-app keys|balance|deposit|faucet|claim`): sign
in with the wallet, call the gateway, print the answer as text or, with --json, as the
gateway's JSON. The HTTP client loads only when a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nexus_app.config import Settings
from nexus_app.units import format_units

if TYPE_CHECKING:
    from nexus_app.client.gateway import GatewayClient


def emit(args: argparse.Namespace, result: dict[str, Any] | BaseModel, text: str) -> None:
    """`result` as JSON with --json (a gateway's answer in the keys it has), else `text`."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    print(json.dumps(result) if args.json else text)


async def signed_in(settings: Settings) -> GatewayClient:
    from nexus_app.chain.wallet import load_or_create_keypair
    from nexus_app.client.gateway import GatewayClient

    client = GatewayClient(settings.gateway_url)
    await client.sign_in(load_or_create_keypair(settings.wallet_path))
    return client


async def keys(args: argparse.Namespace, settings: Settings) -> None:
    async with await signed_in(settings) as client:
        if args.action == "create":
            key = await client.create_key(args.name)
            emit(args, key, key.key)  # alone on stdout: `export NEXUS_KEY=$(nexus-app …)`
            if not args.json:
                print(f"(key {key.id}: shown once, store it now)", file=sys.stderr)
        elif args.action == "list":
            keys = await client.list_keys()
            lines = [f"{k.id}  {k.prefix}…  {k.name}{'  (revoked)' if k.revoked else ''}"
                     for k in keys]
            emit(args, {"data": [k.model_dump(mode="json") for k in keys]},
                  "\n".join(lines) or "no keys")
        else:
            revoked = await client.revoke_key(args.key_id)
            emit(args, revoked, f"revoked {revoked.id}")


async def balance(args: argparse.Namespace, settings: Settings) -> None:
    """Credit balance, and the wallet's on-chain SOL and $NEXUS when the chain answers."""
    from nexus_app.client.gateway import ClientError

    async with await signed_in(settings) as client:
        balance = await client.balance()
        lines = [f"credit: {balance.balance_display} NEXUS (account {balance.account})"]
        try:
            wallet = await client.wallet()
        except ClientError as exc:
            on_chain: dict[str, Any] = {"error": exc.message}
            lines.append(f"wallet: unavailable ({exc.message})")
        else:
            on_chain = wallet.model_dump(mode="json")
            sol = format_units(wallet.sol_lamports, 9)
            lines.append(f"wallet: {wallet.nexus_display} NEXUS, {sol} SOL "
                         f"on the {wallet.chain} chain")
        emit(args, {**balance.model_dump(mode="json"), "wallet": on_chain}, "\n".join(lines))


async def deposit(args: argparse.Namespace, settings: Settings) -> None:
    from nexus_app.chain.wallet import load_or_create_keypair

    async with await signed_in(settings) as client:
        result = await client.deposit(load_or_create_keypair(settings.wallet_path), args.amount)
        state = ("credited" if result.status == "credited"
                 else "sent; credited once the chain confirms it")
        emit(args, result, f"deposit of {result.amount_display} NEXUS {state}\n"
                            f"signature {result.signature}\n"
                            f"credit balance: {result.balance_display} NEXUS")


async def faucet(args: argparse.Namespace, settings: Settings) -> None:
    async with await signed_in(settings) as client:
        minted = await client.faucet(args.amount)
        emit(args, minted, f"minted {minted.amount_display} test NEXUS to {minted.wallet}")


async def claim(args: argparse.Namespace, settings: Settings) -> None:
    """Create the wallet's token account (with its own SOL) if missing, then claim."""
    from nexus_app.chain.wallet import load_or_create_keypair

    async with await signed_in(settings) as client:
        payout = await client.claim(load_or_create_keypair(settings.wallet_path))
        state = "paid" if payout.status == "paid" else "sent (not confirmed yet)"
        emit(args, payout, f"{state}: {payout.amount_display} NEXUS to {payout.wallet}\n"
                            f"signature {payout.signature}")
