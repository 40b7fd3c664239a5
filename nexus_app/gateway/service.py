"""The gateway's parts wired together, and the lifecycle every billed request follows:
reserve -> dispatch -> relay -> settle (or refund)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from nexus_app.chain.backend import Chain, is_panic
from nexus_app.chain.connect import connect_chain
from nexus_app.chain.treasury import Treasury
from nexus_app.config import Settings
from nexus_app.gateway.cluster.replicas import Replica
from nexus_app.gateway.conversations.history import Conversations
from nexus_app.gateway.errors import NotFound, NoWorker
from nexus_app.gateway.http.auth import Authenticator, Caller
from nexus_app.gateway.ledger.records import DepositIntentRecord
from nexus_app.gateway.ledger.sqlite.store import SQLiteStore
from nexus_app.gateway.ledger.store import LedgerUnavailable, Store
from nexus_app.gateway.metrics import Metrics
from nexus_app.gateway.money.billing import BilledUsage, Billing, Reservation
from nexus_app.gateway.money.deposits import Deposits
from nexus_app.gateway.money.free_credit import FreeCredit
from nexus_app.gateway.money.payouts import Payouts
from nexus_app.gateway.money.pricing import PriceBook
from nexus_app.gateway.notify.delivery import Webhooks, load_signing_key
from nexus_app.gateway.ratelimit import Limiter, RateLimiter
from nexus_app.gateway.workers.coordinator import Coordinator
from nexus_app.gateway.workers.health import WorkerHealth
from nexus_app.gateway.workers.job_guard import RelayPolicy
from nexus_app.gateway.workers.job_stream import RETRY_AFTER_S, JobStream
from nexus_app.gateway.workers.prefix_routing import PrefixIndex
from nexus_app.logsafe import redact_url
from nexus_app.protocol import Done, JobKind, ModelCard
from nexus_app.units import format_units, to_base_units

log = logging.getLogger(__name__)
CONVERSATION_PRUNE_S = 60.0  # how often the leader deletes expired conversation records


def ledger_store(settings: Settings) -> Store:
    """The ledger the settings name: PostgreSQL at `ledger_url`, else the SQLite file in the
    data dir (the embedded default)."""
    if settings.ledger_url:
        # imported here: the embedded default starts without loading asyncpg
        from nexus_app.gateway.ledger.postgres.store import PostgresStore

        return PostgresStore(settings.ledger_url, pool_min=settings.ledger_pool_min,
                             pool_max=settings.ledger_pool_max, replica=settings.replica_id,
                             sync_commit=settings.ledger_sync_commit)
    return SQLiteStore(settings.db_path, replica=settings.replica_id)


@dataclass(slots=True)
class Ticket:
    """One billed request in flight: who pays, what was reserved, and the job."""

    caller: Caller
    reservation: Reservation
    stream: JobStream
    billed: BilledUsage | None = None
    cached_tokens: int = 0  # of the billed prompt tokens, those the worker found in its cache
    closed: bool = False


class Gateway:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.prices = PriceBook(settings)
        weekly = settings.free_credit_weekly
        self.free_credit = FreeCredit(
            store, to_base_units(weekly, settings.token_decimals) if weekly else 0,
            settings.free_credit_weekday,
        )
        self.billing = Billing(store, self.prices, settings.worker_share_percent,
                               self.free_credit)
        # several replicas share limits, revocations, workers and leases through Redis
        self.replica = Replica(settings) if settings.redis_url else None
        self.limiter: Limiter = self.replica.limiter if self.replica else RateLimiter()
        self.auth = Authenticator.from_settings(store, self.limiter, settings)
        self.coordinator = Coordinator(
            queue_max=settings.queue_max,
            queue_timeout_s=settings.queue_timeout_s,
            attempts=settings.dispatch_attempts,
            first_token_timeout_s=settings.first_token_timeout_s,
            health=WorkerHealth(
                failures_before_cooldown=settings.worker_failures_before_cooldown,
                cooldown_s=settings.worker_cooldown_s,
                cooldowns_before_pause=settings.worker_cooldowns_before_pause,
                pause_s=settings.worker_pause_s,
            ),
            relay=RelayPolicy(settings.relay_bytes_per_token, settings.relay_min_bytes,
                              settings.relay_max_bytes, settings.relay_buffer_bytes),
            prefixes=PrefixIndex(settings.prefix_routing_entries)
            if settings.prefix_routing_entries else None,
        )
        self.metrics = Metrics(self.coordinator)
        self.conversations = Conversations(
            store, ttl_s=settings.conversation_ttl_s,
            quota_bytes=settings.conversation_quota_bytes,
            history_messages=settings.conversation_history_messages)
        # set by start(): the chain, its treasury, and the services on them
        self.chain: Chain
        self.treasury: Treasury
        self.deposits: Deposits
        self.payouts: Payouts
        self.webhooks: Webhooks
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # one-off tasks still running

    async def start(self) -> None:
        await self.store.open()
        refunded = await self.store.release_all_open()
        if refunded:
            log.warning("refunded %d reservation(s) left open by an earlier run", refunded)
        await self.free_credit.warn_if_unfunded()
        settings = self.settings
        self.chain, self.treasury = await connect_chain(settings)
        self.webhooks = Webhooks(
            self.store, load_signing_key(settings.webhook_key_path),
            max_attempts=settings.webhook_max_attempts,
            retry_base_s=settings.webhook_retry_base_s,
            allow_loopback=settings.webhook_allow_loopback,
            retention_s=settings.webhook_retention_s,
        )
        await self.webhooks.load()
        self.coordinator.on_model_gone = self._model_gone
        self.deposits = Deposits(
            self.store, self.chain, self.treasury, settings.deposit_intent_ttl_s,
            to_base_units(settings.faucet_max, settings.token_decimals), self._deposit_credited,
            max_open_intents=settings.deposit_intents_per_account,
            retention_s=settings.deposit_intent_retention_s,
        )
        self.payouts = Payouts(
            self.store, self.chain, self.treasury, hold_s=settings.worker_earnings_hold_s,
            min_payout=to_base_units(settings.min_payout, settings.token_decimals),
        )
        log.info("chain %s%s: mint %s, treasury token account %s", self.chain.name,
                 f" at {redact_url(settings.rpc_url, keep_path=False)}"
                 if settings.chain == "rpc" and settings.rpc_url else "",
                 self.treasury.mint, self.treasury.token_account)
        self._tasks = [asyncio.create_task(self._housekeep())]
        if self.replica is None:
            self._tasks += self._lead()
        else:  # on the replica that holds the leader's lease only
            await self.replica.start(self.auth, self.coordinator, lead=self._lead,
                                     refund=self.store.release_replica)

    def _lead(self) -> list[asyncio.Task[None]]:
        """The work one gateway does for all replicas: the chain watcher (deposits, payout
        reconciliation), webhook delivery and deleting expired conversations."""
        return [asyncio.create_task(self._watch_chain()),
                asyncio.create_task(self.webhooks.run()),
                asyncio.create_task(self._prune_conversations())]

    async def _prune_conversations(self) -> None:
        while True:
            try:
                pruned = await self.conversations.prune()
                if pruned:
                    log.info("deleted %d expired conversation record(s)", pruned)
            except Exception as exc:  # the ledger may be down: try again next round
                log.warning("pruning conversations failed: %s", type(exc).__name__)
            await asyncio.sleep(CONVERSATION_PRUNE_S)

    async def stop(self) -> None:
        self.coordinator.on_model_gone = None  # workers leaving a stopping gateway
        for task in [*self._tasks, *self._background]:
            task.cancel()
        if self.replica is not None:
            await self.replica.stop()
        await self.auth.flush_last_used()
        await self.chain.close()
        await self.store.close()

    async def _watch_chain(self) -> None:
        """Settle payouts left open and credit deposits whose client went away, at start and
        then every `chain_poll_interval_s`."""
        failing: str | None = None  # the failure logged last: logged once, not every round
        while True:
            try:
                await self.payouts.reconcile()
                await self.deposits.watch()
            except BaseException as exc:  # the chain may be down: try again next round
                if not isinstance(exc, Exception) and not is_panic(exc):
                    raise  # cancelled (a stopping gateway), KeyboardInterrupt, SystemExit
                failure = f"{type(exc).__name__}: {str(exc)[:200]}"
                if failure != failing:
                    log.warning("chain watcher: %s (retrying every %g s)", failure,
                                self.settings.chain_poll_interval_s)
                failing = failure
            else:
                if failing is not None:
                    log.info("chain watcher: working again")
                failing = None
            await asyncio.sleep(self.settings.chain_poll_interval_s)

    async def _deposit_credited(self, intent: DepositIntentRecord, signature: str) -> None:
        await self.webhooks.emit(intent.account, "deposit.credited", {
            "signature": signature, "amount": intent.amount,
            "amount_display": self.display(intent.amount), "intent": intent.id})
        await self.webhooks.balance_changed(intent.account)

    def _model_gone(self, model: str) -> None:
        task = asyncio.create_task(
            self.webhooks.model_gone(model, lambda: not self.coordinator.serves(model)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _housekeep(self) -> None:
        """Once a second: store maintenance, and tell workers their new earnings (coalesced,
        rather than one frame per job). Every ten: record keys' last use, forget stale
        rate-limit windows."""
        for tick in itertools.count(1):
            await asyncio.sleep(1)
            try:
                await self.store.maintain()
                await self._push_earnings()
                if tick % 10 == 0:
                    await self.auth.flush_last_used()
                    self.limiter.sweep()
            except Exception as exc:  # keep the gateway serving whatever happens here
                log.error("housekeeping failed: %s", type(exc).__name__)

    async def _push_earnings(self) -> None:
        wallets, self.coordinator.earnings_changed = self.coordinator.earnings_changed, set()
        for wallet in wallets:
            earnings = await self.store.worker_earnings(wallet)
            await self.coordinator.send_earnings(wallet, earnings.earned, earnings.paid)

    def display(self, amount: int) -> str:
        """`amount` base units as a NEXUS amount for people (the `*_display` fields)."""
        return format_units(amount, self.settings.token_decimals)

    def model_card(self, model: str) -> ModelCard | None:
        """The served model's card. When no worker serves it now: a 503 for a model served
        since the gateway started (its workers may come back), a 404 for one never served
        nor priced; None for a priced one (the coordinator answers, or queues the job)."""
        card = self.coordinator.card(model)
        if card is None and self.coordinator.has_served(model):
            raise NoWorker(f"No worker serves the model '{model}' now; it was served "
                           "earlier and may come back, try again later.", param="model",
                           code="model_unavailable", retry_after=RETRY_AFTER_S)
        if card is None and not self.prices.configured(model):
            raise NotFound(f"The model '{model}' does not exist.", param="model",
                           code="model_not_found")
        return card

    async def open_ticket(
        self,
        caller: Caller,
        kind: JobKind,
        model: str,
        request: dict[str, Any],
        prompt_bound: int,
        max_tokens: int,
    ) -> Ticket:
        """Reserve the request's maximum cost, then queue its job."""
        reservation = await self.billing.reserve(caller.account, model, prompt_bound, max_tokens)
        stream = self.coordinator.submit(kind, model, request, self.settings.job_timeout_s)
        return Ticket(caller, reservation, stream)

    async def close_ticket(self, ticket: Ticket, done: Done | None) -> None:
        """Settle what was delivered when the worker finished (or reported after a cancel);
        otherwise refund in full. Runs once per ticket; later calls do nothing."""
        if ticket.closed:
            return
        ticket.closed = True
        stream = ticket.stream
        final = await stream.close()
        done = done or final
        try:
            if done is None or stream.worker is None:
                await self.billing.refund(ticket.reservation)
                self.metrics.jobs.labels("failed").inc()
                return
            billed = self.billing.bill(
                ticket.reservation,
                done.usage.prompt_tokens,
                done.usage.completion_tokens,
                stream.delivered_bytes,
            )
            ticket.billed = billed
            ticket.cached_tokens = min(done.usage.cached_tokens, billed.prompt_tokens)
            try:
                await self.billing.settle(ticket.reservation, billed, stream.worker.wallet)
            except LedgerUnavailable:
                # the store keeps the settlement and applies it once the ledger is back; the
                # answer is the client's (its reservation already holds the cost), so the
                # request is not failed after the work was done and billed
                log.warning("a request is settled once the ledger is back")
            self.metrics.record_settled(billed)
            await self.limiter.add_tokens(
                ticket.caller.limiter_id, billed.prompt_tokens + billed.completion_tokens
            )
            self.coordinator.earnings_changed.add(stream.worker.wallet)
        except Exception as exc:
            log.error("closing a request failed: %s", type(exc).__name__)
            await self.billing.refund(ticket.reservation)
            raise
        try:
            await self.webhooks.job_served(ticket.caller.account, stream.job.model)
            await self.webhooks.balance_changed(ticket.caller.account)
        except Exception as exc:  # a notification never fails the request it follows
            log.error("webhook bookkeeping failed: %s", type(exc).__name__)
