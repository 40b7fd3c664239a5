"""The operator's commands (`nexus-app admin …`), run on the gateway's host against its data
dir: grants, the ledger and solvency audit, funding the promotional pool on chain, and moving
the ledger from SQLite to PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from nexus_app.addresses import is_valid_address
from nexus_app.chain.backend import Chain, ChainError
from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import Treasury, faucet
from nexus_app.chain.wallet import WalletError, load_keypair
from nexus_app.config import Settings
from nexus_app.gateway.ledger.postgres.copy import CopyRefused, copy_sqlite_ledger
from nexus_app.gateway.ledger.postgres.store import PostgresStore
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import LedgerStore, LedgerUnavailable, Store
from nexus_app.gateway.money.promo import PromoCredit, PromoFundingFailed, credit_promo, fund_promo
from nexus_app.gateway.money.solvency import (
    SolvencyStore,
    check_solvency_settled,
    open_treasury_view,
)
from nexus_app.gateway.service import ledger_store
from nexus_app.logsafe import redact_url
from nexus_app.units import AmountError, format_units, to_base_units


class AdminError(Exception):
    """An operator command failed for a reason the operator can act on."""


def run_admin(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Run `args.action`; returns its result (what `--json` prints). `AdminError` on failure
    (after printing nothing): the caller prints it and exits 1."""
    try:
        return asyncio.run(_run(args, settings))
    except (ChainError, WalletError, PromoFundingFailed) as exc:
        raise AdminError(str(exc)) from None


async def _run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.action == "migrate-ledger":
        return await _migrate_ledger(settings, args.to)
    store = ledger_store(settings)
    await store.open()
    try:
        if args.action == "grant":
            return await _grant(args, settings, store)
        return await _chain_action(args, settings, store)
    finally:
        await store.close()


async def _grant(args: argparse.Namespace, settings: Settings,
                 store: LedgerStore) -> dict[str, Any]:
    if not is_valid_address(args.account):
        raise AdminError(f"'{args.account}' is not a Solana address")
    amount = _units(args.amount, settings)
    await store.grant(args.account, amount, args.memo)
    return {"account": args.account, "granted": amount}


async def _chain_action(args: argparse.Namespace, settings: Settings,
                        store: Store) -> dict[str, Any]:
    if args.action == "audit":
        return await _audit(settings, store, args.ledger_only)
    if args.action == "promo-credit":
        async with _reading(settings) as (chain, treasury):
            return _promo_result(await credit_promo(store, chain, treasury, args.signature))
    amount = _units(args.amount, settings)
    from nexus_app.chain.connect import connect_chain

    chain, treasury = await connect_chain(settings)  # the local chain: locked while open
    try:
        source = await _funding_source(chain, treasury, args.source, amount)
        return _promo_result(await fund_promo(store, chain, treasury, source, amount))
    finally:
        await chain.close()


async def _audit(settings: Settings, store: SolvencyStore, ledger_only: bool) -> dict[str, Any]:
    if ledger_only:
        audit = await store.audit()
        return {"ok": audit.ok, "ledger_ok": audit.ok, **_fields(audit)}
    chain, treasury = await open_treasury_view(settings)
    try:
        account = treasury.token_account if treasury is not None else None
        audit, solvency = await check_solvency_settled(store, chain, account)
    finally:
        if chain is not None:
            await chain.close()
    return {"ok": audit.ok and solvency.ok, "ledger_ok": audit.ok, "solvent": solvency.ok,
            "treasury_balance": solvency.treasury_balance,
            "in_flight_payouts": solvency.in_flight_payouts, "owed": solvency.owed,
            "surplus": solvency.surplus, **_fields(audit)}


async def _migrate_ledger(settings: Settings, url: str) -> dict[str, Any]:
    """Copy the data dir's SQLite ledger into the empty PostgreSQL ledger at `url` (the
    gateway stopped), checked by the audit on both sides."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise AdminError("--to takes a postgresql://user:password@host:port/db URL")
    if not settings.db_path.exists():
        raise AdminError(f"there is no SQLite ledger at {settings.db_path}")
    source = SQLiteStore(settings.db_path)
    target = PostgresStore(url, pool_min=1, pool_max=1)
    await source.open()
    try:
        await target.open()
        # what the stopped gateway left reserved is refunded first, as its next start would:
        # no replica on PostgreSQL would own those reservations
        replicas = [row[0] for row in source.db.execute(
            "SELECT DISTINCT replica FROM reservations").fetchall()]
        refunded = sum([await source.release_replica(replica) for replica in replicas])
        # a write between the two (a gateway still running) fails the comparison
        copied = await copy_sqlite_ledger(source.db, target, await source.audit())
    except (CopyRefused, LedgerUnavailable) as exc:
        raise AdminError(str(exc)) from None
    finally:
        await source.close()
        await target.close()
    return {"ok": copied.ok, "from": str(settings.db_path), "to": redact_url(url),
            "refunded_reservations": refunded, **_fields(copied)}


def _fields(audit: Any) -> dict[str, Any]:
    return {name: getattr(audit, name) for name in audit.__slots__}


async def _funding_source(chain: Chain, treasury: Treasury, path: Path | None,
                          amount: int) -> Keypair:
    """Who pays the funding: `--from`; on the local chain a new wallet by default, and the
    test $NEXUS is minted to it first (the treasury is the mint authority there)."""
    if not isinstance(chain, LocalChain):
        if path is None:
            raise AdminError("on the rpc chain, give the keypair that pays the funding with "
                             "--from KEYPAIR")
        return load_keypair(path)
    source = load_keypair(path) if path is not None else Keypair()
    await faucet(chain, treasury, source.pubkey(), amount)
    return source


@contextlib.asynccontextmanager
async def _reading(settings: Settings) -> AsyncIterator[tuple[Chain, Treasury]]:
    chain, treasury = await open_treasury_view(settings)
    try:
        if chain is None or treasury is None:
            raise AdminError("the local chain has no treasury yet: start the gateway once")
        yield chain, treasury
    finally:
        if chain is not None:
            await chain.close()


def _promo_result(credit: PromoCredit) -> dict[str, Any]:
    return {"signature": credit.signature, "amount": credit.amount, "source": credit.source,
            "credited": credit.credited, "pool": credit.pool}


def _units(amount: str, settings: Settings) -> int:
    try:
        return to_base_units(amount, settings.token_decimals)
    except AmountError as exc:
        raise AdminError(str(exc)) from None


def describe(action: str, result: dict[str, Any], decimals: int) -> str:
    """The human-readable output of an admin command."""
    def nexus(units: int) -> str:
        return f"{format_units(units, decimals)} NEXUS"

    if action == "grant":
        return f"granted {nexus(result['granted'])} to {result['account']}"
    if action in ("audit", "migrate-ledger"):
        return "\n".join(f"{k}: {v}" for k, v in result.items())
    state = "credited to" if result["credited"] else "already credited to (nothing added)"
    return (f"{nexus(result['amount'])} from {result['source']} {state} the promotional pool\n"
            f"signature {result['signature']}\npool: {nexus(result['pool'])}")
