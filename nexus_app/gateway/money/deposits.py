"""Deposits: intents with a fresh reference key, checking a deposit transaction on chain
before crediting it (exactly once per signature), the watcher that credits deposits whose
client went away after sending, and the local chain's dev faucet.

Intents cost the caller nothing, so each account may hold only a few open ones, and expired
ones that were never paid are deleted once their retention is over (paid ones stay as the
deposit history). The watcher reads the treasury's new signatures once a round
(`deposit_scan.py`): its chain calls grow with the deposits made, not with the intents open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from nexus_app.chain.backend import (
    Chain,
    ChainError,
    ChainTransaction,
    ChainUnavailable,
    TransactionFailed,
)
from nexus_app.chain.deposit_tx import DepositRejected, check_deposit, transfer_references
from nexus_app.chain.local import LocalChain
from nexus_app.chain.treasury import Treasury, faucet
from nexus_app.gateway.errors import ApiError, BadRequest, Forbidden, RateLimited
from nexus_app.gateway.ledger.records import DepositIntentRecord
from nexus_app.gateway.ledger.store import DepositStore
from nexus_app.gateway.money.deposit_scan import TreasuryScan
from nexus_app.ids import new_id

log = logging.getLogger(__name__)
T = TypeVar("T")
OnCredited = Callable[[DepositIntentRecord, str], Awaitable[None]]  # (intent, signature)
# what a watcher round lets through: stopping the process, never a failure of one transaction
FATAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


class DepositFailed(ApiError):
    """The transaction is not a valid deposit (or failed on chain): nothing was credited."""

    status, type, code = 400, "invalid_request_error", "deposit_rejected"


class ChainDown(ApiError):
    status, type, code = 503, "service_unavailable", "chain_unavailable"


@dataclass(frozen=True, slots=True)
class DepositOutcome:
    intent: DepositIntentRecord
    signature: str
    credited: bool  # False: landed but not yet at the commitment (the watcher credits it)
    already_credited: bool = False


class Deposits:
    def __init__(self, store: DepositStore, chain: Chain, treasury: Treasury, intent_ttl_s: int,
                 faucet_max: int, on_credited: OnCredited, *, max_open_intents: int = 10,
                 retention_s: float = 86_400) -> None:
        self.store = store
        self.chain = chain
        self.treasury = treasury
        self.intent_ttl_s = intent_ttl_s
        self.faucet_max = faucet_max
        self.on_credited = on_credited
        self.max_open_intents = max_open_intents
        self.retention_s = retention_s
        self.scan = TreasuryScan(store, chain, treasury.token_account)

    async def new_intent(self, account: str, amount: int) -> tuple[DepositIntentRecord, str]:
        """A deposit intent with a fresh reference, and a recent blockhash to sign with;
        429 when the account holds `max_open_intents` open ones (checked before the chain is
        asked for anything, and again, atomically, when the intent is added)."""
        now = time.time()
        await self._room_for_intent(account, now)
        blockhash = await self.chain_call(self.chain.latest_blockhash())
        intent_id = new_id("dep")
        intent = DepositIntentRecord(
            id=intent_id, account=account, reference=str(Keypair().pubkey()), amount=amount,
            memo=f"NEXUS deposit {intent_id}", created_at=now, expires_at=now + self.intent_ttl_s,
        )
        if not await self.store.add_deposit_intent(intent, self.max_open_intents):
            await self._room_for_intent(account, now)  # raises, with when to try again
            raise RateLimited("Too many open deposit intents.", code="too_many_deposit_intents",
                              retry_after=1)
        return intent, str(blockhash)

    async def _room_for_intent(self, account: str, now: float) -> None:
        """Raise 429 (with when the soonest intent expires) if the account's are all used."""
        open_now = await self.store.open_deposit_intents(now, account, self.max_open_intents)
        if len(open_now) < self.max_open_intents:
            return
        wait = max(1, math.ceil(open_now[0].expires_at - now))
        raise RateLimited(
            f"This account already has {len(open_now)} open deposit intents, the most it may "
            f"hold. Pay one of them, or ask again in {wait} s when the oldest expires.",
            code="too_many_deposit_intents", retry_after=wait,
        )

    async def submit_transaction(self, account: str, encoded: str) -> DepositOutcome:
        """Check a signed deposit transaction, send it, and credit it once it is processed.
        The transaction is checked before it is sent, so a wrong one never moves tokens."""
        tx = _decode_transaction(encoded)
        signature = str(tx.signatures[0])
        unsent = ChainTransaction(signature, 0, tx, (), None)
        intent = await self._intent_of(account, unsent)
        self._check(unsent, intent)
        try:
            await self.chain.send(tx)
        except TransactionFailed as exc:
            raise DepositFailed(f"The deposit transaction failed on chain: {exc}") from None
        except ChainUnavailable:
            return DepositOutcome(intent, signature, credited=False)
        return await self._credit_landed(account, signature)

    async def submit_signature(self, account: str, signature: str) -> DepositOutcome:
        """Credit a deposit the client sent itself, once it is processed on chain."""
        try:
            Signature.from_string(signature)
        except ValueError:
            raise BadRequest("'signature' is not a base58 transaction signature.",
                             param="signature") from None
        return await self._credit_landed(account, signature)

    async def _credit_landed(self, account: str, signature: str) -> DepositOutcome:
        found = await self.chain_call(self.chain.transaction(signature))
        if found is None:
            raise DepositFailed(
                f"No processed transaction {signature} on the chain (at its commitment) yet.",
                code="transaction_not_found",
            )
        intent = await self._intent_of(account, found)
        self._check(found, intent)
        credited = await self._credit(signature, intent)
        return DepositOutcome(intent, signature, credited=True, already_credited=not credited)

    async def _credit(self, signature: str, intent: DepositIntentRecord) -> bool:
        """Credit the deposit once; False when the signature was credited before."""
        credited = await self.store.credit_deposit(signature, intent)
        if credited:
            await self.on_credited(intent, signature)
        return credited

    async def _intent_of(self, account: str, tx: ChainTransaction) -> DepositIntentRecord:
        """The caller's intent whose reference the transaction carries."""
        for reference in transfer_references(tx):
            intent = await self.store.deposit_intent(str(reference))
            if intent is None:
                continue
            if intent.account != account:
                raise Forbidden("This deposit belongs to another account.",
                                code="deposit_of_another_account")
            return intent
        raise DepositFailed("The transaction carries no reference of a deposit intent: get one "
                            "from GET /v1/deposits/intent and add it to the transfer.",
                            code="unknown_reference")

    def _check(self, tx: ChainTransaction, intent: DepositIntentRecord) -> None:
        try:
            check_deposit(
                tx, reference=Pubkey.from_string(intent.reference), mint=self.treasury.mint,
                treasury=self.treasury.token_account, decimals=self.treasury.decimals,
                amount=intent.amount,
            )
        except DepositRejected as exc:
            raise DepositFailed(f"Not a valid deposit: {exc}.") from None

    async def watch(self) -> int:
        """One watcher round: delete intents whose retention is over, then credit the
        deposits among the treasury's new transactions. Returns how many were credited."""
        now = time.time()
        pruned = await self.store.prune_deposit_intents(now - self.retention_s)
        if pruned:
            log.info("deleted %d expired deposit intent(s) that were never paid", pruned)
        signatures = await self.scan.unseen()
        if not signatures:
            return 0
        if not await self.store.open_deposit_intents(now - self.retention_s, limit=1):
            await self.scan.seen(signatures[-1])  # no intent awaits a deposit: nothing to match
            return 0
        credited, last = 0, None
        try:
            for signature in signatures:
                found = await self.chain.transaction(signature)
                if found is None and not self.scan.give_up_on(signature):
                    break  # listed but not readable yet: from here again next round
                if found is not None:
                    credited += await self._credit_found(found)
                last = signature
        finally:
            if last is not None:
                await self.scan.seen(last)
        return credited

    async def _credit_found(self, found: ChainTransaction) -> int:
        """Credit `found` if it pays an intent (1), else 0. A transaction that cannot be read
        is passed over, logged; only chain errors stop the round (to retry it)."""
        try:
            return await self._credit_if_deposit(found)
        except ChainError:
            raise
        except FATAL:
            raise
        except BaseException as exc:  # e.g. a panic in solders on a transaction it cannot read
            log.error("deposit watcher: transaction %s skipped: %s", found.signature,
                      type(exc).__name__)
            return 0

    async def _credit_if_deposit(self, found: ChainTransaction) -> int:
        if not found.succeeded:
            return 0
        for reference in transfer_references(found):
            intent = await self.store.deposit_intent(str(reference))
            if intent is None:
                continue
            try:
                self._check(found, intent)
            except DepositFailed as exc:
                log.warning("deposit %s for intent %s refused: %s", found.signature, intent.id,
                            exc.message)
                continue
            if await self._credit(found.signature, intent):
                log.info("credited deposit %s found on chain for intent %s",
                         found.signature, intent.id)
                return 1
        return 0

    async def faucet(self, wallet: Pubkey, amount: int) -> str:
        """Mint test $NEXUS to `wallet` (local chain only)."""
        if not isinstance(self.chain, LocalChain):
            raise Forbidden("The faucet exists only on the local chain.", code="faucet_disabled")
        if amount > self.faucet_max:
            raise BadRequest(f"The faucet gives at most {self.faucet_max} base units a call.",
                             param="amount")
        return await self.chain_call(faucet(self.chain, self.treasury, wallet, amount))

    @staticmethod
    async def chain_call(call: Awaitable[T]) -> T:
        try:
            return await call
        except ChainUnavailable as exc:
            raise ChainDown(f"The Solana chain is unavailable: {exc}", retry_after=5) from None
        except TransactionFailed as exc:
            raise DepositFailed(f"The chain refused the call: {exc}",
                                code="transaction_failed") from None


def _decode_transaction(encoded: str) -> VersionedTransaction:
    try:
        tx = VersionedTransaction.from_bytes(base64.b64decode(encoded, validate=True))
    except (ValueError, binascii.Error):
        raise BadRequest("'transaction' is not a base64 serialized Solana transaction.",
                         param="transaction") from None
    if not tx.signatures:
        raise BadRequest("'transaction' is not signed.", param="transaction")
    return tx
