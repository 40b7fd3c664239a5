"""Solvency: does the treasury really hold what the ledger owes?

The ledger invariant (`LedgerAudit.ok`) proves the ledger adds up; it cannot see credit
created out of nothing or tokens gone from the treasury. Solvency compares the ledger with
the chain:

    owed = paid credit + free credit + credit reserved by requests in flight
           + the promotional pool + worker earnings not paid yet (claimable, held, paying)
    held = the treasury token account's balance on chain (at the configured commitment)
           + open payouts the chain has already processed but the ledger not yet marked paid
    solvent when held >= owed

Treasury fees are not owed (they are the operator's); the surplus `held - owed` is what the
operator may take. Grants are owed like any credit, so they are backed only by fees (or by
tokens the operator transfers in).

The ledger is read first, then the open payouts' status, then the balance: a deposit or a
payout landing meanwhile can only make the treasury look poorer than it is, never richer, so a
check against a running gateway may report a passing shortfall (checked again after a pause)
but never hides one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from solders.pubkey import Pubkey

from nexus_app.chain.backend import Chain
from nexus_app.chain.connect import connect_chain
from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import Treasury
from nexus_app.chain.wallet import load_keypair
from nexus_app.config import Settings
from nexus_app.gateway.ledger.records import LedgerAudit, PayoutStatus
from nexus_app.gateway.ledger.store import AuditStore, EarningsStore


@dataclass(frozen=True, slots=True)
class Solvency:
    treasury_balance: int
    in_flight_payouts: int
    owed: int

    @property
    def held(self) -> int:
        return self.treasury_balance + self.in_flight_payouts

    @property
    def ok(self) -> bool:
        return self.held >= self.owed

    @property
    def surplus(self) -> int:
        return self.held - self.owed


class SolvencyStore(AuditStore, EarningsStore, Protocol):
    """What the solvency check reads: the audit, and the payouts still open."""


async def check_solvency(store: SolvencyStore, chain: Chain | None,
                         treasury_account: Pubkey | None) -> tuple[LedgerAudit, Solvency]:
    """The ledger audit and the solvency against `chain` (None: no chain, nothing held)."""
    audit = await store.audit()
    in_flight = await _landed_payouts(store, chain) if chain is not None else 0
    balance = 0
    if chain is not None and treasury_account is not None:
        balance = await chain.token_balance(treasury_account)
    return audit, Solvency(balance, in_flight, audit.owed)


async def check_solvency_settled(store: SolvencyStore, chain: Chain | None,
                                 treasury_account: Pubkey | None, attempts: int = 3,
                                 pause_s: float = 1.0) -> tuple[LedgerAudit, Solvency]:
    """`check_solvency`, checked again after a pause while it fails (a payout or deposit
    landing during the check makes a passing shortfall)."""
    for attempt in range(attempts):
        audit, solvency = await check_solvency(store, chain, treasury_account)
        if solvency.ok or chain is None or attempt == attempts - 1:
            break
        await asyncio.sleep(pause_s)
    return audit, solvency


async def _landed_payouts(store: EarningsStore, chain: Chain) -> int:
    """Amounts of sent payouts whose transaction the chain processed successfully."""
    landed = 0
    for payout in await store.open_payouts():
        if payout.status == PayoutStatus.SENT and payout.signature is not None:
            found = await chain.transaction(payout.signature)
            if found is not None and found.succeeded:
                landed += payout.amount
    return landed


async def open_treasury_view(settings: Settings) -> tuple[Chain | None, Treasury | None]:
    """The chain and the treasury, opened to read: the local chain from the data dir without
    its lock (a gateway may be running; nothing is sent), the rpc chain at the configured URL.
    (None, None) when the local chain was never created; no treasury before its mint is."""
    if settings.chain == "local":
        if not settings.local_chain_path.exists():
            return None, None
        local = LocalChain(settings.local_chain_path, exclusive=False)
        mint = local.meta("mint")
        if mint is None or not settings.treasury_path.exists():
            return local, None
        decimals = int(local.meta("decimals") or settings.token_decimals)
        return local, Treasury(load_keypair(settings.treasury_path), Pubkey.from_string(mint),
                               decimals)
    return await connect_chain(settings)
