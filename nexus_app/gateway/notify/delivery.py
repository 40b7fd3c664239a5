"""Webhooks: accounts register endpoints, the gateway queues signed events for them in the
ledger database and delivers them in the background, retrying with backoff.

Delivery is at least once: an event whose attempt was cut short by a crash is sent again, so
receivers deduplicate by the event `id`. Each webhook's secret is derived from the gateway's
signing key and the webhook id (nothing secret is stored in the database); it is shown once,
when the webhook is created.

Targets are checked against SSRF at registration and before every delivery (see
`targets.py`); the delivery log keeps an outcome class ("2xx", "timeout"), never the
receiver's error text. `model.unavailable` goes only to accounts that were served the model
(and at most once an hour per account and model), so a worker cannot make the gateway send
signed events carrying model ids it invented.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import random
import secrets
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from nexus_app import __version__
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.ledger.records import DeliveryStatus, Webhook, WebhookDelivery
from nexus_app.gateway.ledger.store import LedgerStore, WebhookStore
from nexus_app.gateway.notify.targets import (
    Resolver,
    Target,
    Unresolved,
    UnsafeTarget,
    resolve_target,
    system_resolve,
)
from nexus_app.ids import new_id
from nexus_app.protocol import is_model_id
from nexus_app.webhook_signing import SIGNATURE_HEADER, signature

log = logging.getLogger(__name__)

EVENTS = ("deposit.credited", "balance.low", "key.created", "key.revoked", "model.unavailable")
MAX_WEBHOOKS_PER_ACCOUNT = 10
MAX_BACKOFF_S = 3600.0
BATCH = 32  # deliveries attempted at once
MODEL_ALERT_INTERVAL_S = 3600.0  # model.unavailable for one model, per account, at most
PRUNE_EVERY_S = 60.0
# What the delivery log says of an attempt: our words for each outcome, never the receiver's.
OUTCOMES = {
    "2xx": None,
    "1xx": "the receiver answered with an informational status",
    "3xx": "the receiver answered with a redirect (redirects are not followed)",
    "4xx": "the receiver answered with a client error status",
    "5xx": "the receiver answered with a server error status",
    "timeout": "the receiver did not answer in time",
    "refused": "the connection to the receiver failed",
    "tls": "the TLS handshake with the receiver failed (certificate or protocol)",
    "error": "the connection broke before the receiver answered",
    "unresolved": "the URL's host name does not resolve",
    "blocked": "the URL's host resolves to an address webhooks may not reach (private, "
               "loopback, link-local, multicast or reserved)",
}


def load_signing_key(path: Path) -> bytes:
    """The gateway's webhook signing key, created (mode 0600) on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key


class DeliveryStore(WebhookStore, LedgerStore, Protocol):
    """The webhooks, and the balances that balance.low watches."""


class Webhooks:
    def __init__(self, store: DeliveryStore, signing_key: bytes, *, max_attempts: int,
                 retry_base_s: float, timeout_s: float = 10.0, allow_loopback: bool = False,
                 retention_s: float = 7 * 86_400.0,
                 resolver: Resolver = system_resolve) -> None:
        self.store = store
        self.signing_key = signing_key
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.timeout_s = timeout_s
        self.allow_loopback = allow_loopback
        self.retention_s = retention_s
        self.resolver = resolver
        self.model_grace_s = 5.0  # a model must stay unserved this long to be reported
        self._accounts: set[str] = set()  # accounts with at least one webhook
        self._watching: set[str] = set()  # models gone, waiting out the grace period
        self._wake = asyncio.Event()

    async def load(self) -> None:
        self._accounts = {hook.account for hook in await self.store.webhooks()}

    def secret(self, webhook_id: str) -> str:
        mac = hmac.new(self.signing_key, webhook_id.encode(), hashlib.sha256).digest()
        return "whsec_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    # registration ------------------------------------------------------------------------------

    async def register(self, account: str, url: str, events: list[str],
                       balance_low_threshold: int | None) -> tuple[Webhook, str]:
        """A new webhook and its secret (returned only here)."""
        if "balance.low" in events and balance_low_threshold is None:
            raise BadRequest("The balance.low event needs a 'balance_low_threshold'.",
                             param="balance_low_threshold")
        if len(await self.store.webhooks(account)) >= MAX_WEBHOOKS_PER_ACCOUNT:
            raise BadRequest(f"An account has at most {MAX_WEBHOOKS_PER_ACCOUNT} webhooks.",
                             code="too_many_webhooks")
        hook = Webhook(new_id("wh"), account, await self._checked(url),
                       tuple(dict.fromkeys(events)), balance_low_threshold, time.time())
        await self.store.add_webhook(hook)
        self._accounts.add(account)
        return hook, self.secret(hook.id)

    async def _checked(self, url: str) -> str:
        """`url`, unless it is or resolves to an address webhooks may not reach. A name that
        does not resolve now is accepted: every delivery resolves and checks it again."""
        try:
            await self._target(url)
        except UnsafeTarget as exc:
            raise BadRequest(f"This webhook URL is refused: {exc}.", param="url",
                             code="invalid_webhook_url") from None
        except Unresolved:
            pass
        return url

    async def _target(self, url: str) -> Target:
        return await resolve_target(url, allow_loopback=self.allow_loopback,
                                    resolver=self.resolver)

    async def delete(self, account: str, webhook_id: str) -> bool:
        deleted = await self.store.delete_webhook(account, webhook_id)
        if deleted and not await self.store.webhooks(account):
            self._accounts.discard(account)
            await self.store.forget_models_served(account)
        return deleted

    # events ------------------------------------------------------------------------------------

    async def emit(self, account: str, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for each of the account's webhooks that subscribed to it."""
        if account in self._accounts:
            hooks = [h for h in await self.store.webhooks(account) if event in h.events]
            await self._queue(hooks, event, data, account)

    async def balance_changed(self, account: str) -> None:
        """Send balance.low once when the balance falls under a webhook's threshold; re-arm
        when it is back at or above it."""
        if account not in self._accounts:
            return
        available = (await self.store.balance(account)).available
        for hook in await self.store.webhooks(account):
            threshold = hook.balance_low_threshold
            if "balance.low" not in hook.events or threshold is None:
                continue
            low = available < threshold
            if low and not hook.balance_low_sent:
                await self._queue([hook], "balance.low",
                                  {"balance": available, "threshold": threshold}, account)
            if low != hook.balance_low_sent:
                await self.store.set_balance_low_sent(hook.id, low)

    async def job_served(self, account: str, model: str) -> None:
        """Remember that `account` was served `model`: model.unavailable is only for them
        (recorded for accounts with webhooks only, so it costs nothing to the others)."""
        if account in self._accounts and is_model_id(model):
            await self.store.note_model_served(account, model, time.time())

    async def model_gone(self, model: str, still_gone: Callable[[], bool]) -> None:
        """Report model.unavailable, to the accounts that were served `model` and were not
        told about it in the last hour, if `still_gone()` holds after the grace period (a
        worker reconnecting at once is not an outage)."""
        if not is_model_id(model) or model in self._watching:
            return
        self._watching.add(model)
        try:
            await asyncio.sleep(self.model_grace_s)
            if not still_gone():
                return
            now = time.time()
            accounts = await self.store.claim_model_alerts(
                model, now - MODEL_ALERT_INTERVAL_S, now)
        finally:
            self._watching.discard(model)
        for account in accounts:
            await self.emit(account, "model.unavailable", {"model": model})

    async def _queue(self, hooks: list[Webhook], event: str, data: dict[str, Any],
                     account: str) -> None:
        if not hooks:
            return
        now = time.time()
        event_id = new_id("evt")
        deliveries = []
        for hook in hooks:
            payload = orjson.dumps({"id": event_id, "type": event, "created": int(now),
                                    "account": account, "data": data})
            deliveries.append(WebhookDelivery(new_id("whd"), hook.id, event_id, event, payload,
                                              DeliveryStatus.PENDING, 0, now, now))
        await self.store.add_deliveries(deliveries)
        self._wake.set()

    # delivery ----------------------------------------------------------------------------------

    async def run(self, poll_s: float = 1.0) -> None:
        """Deliver due events until cancelled; woken at once when an event is queued. Each
        connection serves one delivery (no keep-alive: connections are made to checked
        addresses, and one to a shared address must not carry another host's request)."""
        pruned_at = 0.0
        async with httpx.AsyncClient(
            timeout=self.timeout_s, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as http:
            while True:
                self._wake.clear()
                try:
                    if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                        pruned_at = time.monotonic()
                        await self.store.prune_webhooks(time.time() - self.retention_s)
                    due = await self.store.due_deliveries(time.time(), BATCH)
                    await asyncio.gather(*(self._attempt(http, d, url) for d, url in due))
                except Exception as exc:  # keep delivering whatever one round hit
                    log.error("webhook delivery round failed: %s", type(exc).__name__)
                    due = []
                if len(due) < BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), poll_s)

    async def _attempt(self, http: httpx.AsyncClient, delivery: WebhookDelivery,
                       url: str) -> None:
        outcome = await self._deliver(http, delivery, url)
        attempts = delivery.attempts + 1
        if outcome == "2xx":
            await self.store.record_attempt(delivery.id, DeliveryStatus.DELIVERED, time.time(),
                                            outcome)
        elif attempts >= self.max_attempts:
            log.warning("webhook delivery %s failed for good: %s", delivery.id, outcome)
            await self.store.record_attempt(delivery.id, DeliveryStatus.FAILED, time.time(),
                                            outcome)
        else:
            await self.store.record_attempt(delivery.id, DeliveryStatus.PENDING,
                                            time.time() + self.backoff(attempts), outcome)

    async def _deliver(self, http: httpx.AsyncClient, delivery: WebhookDelivery,
                       url: str) -> str:
        """One attempt, checked and connected to the address checked; its outcome class."""
        try:
            async with asyncio.timeout(self.timeout_s * 2):  # resolving and answering, in all
                target = await self._target(url)
                return await self._post(http, target, delivery)
        except UnsafeTarget:
            return "blocked"
        except Unresolved:
            return "unresolved"
        except (TimeoutError, httpx.TimeoutException):
            return "timeout"
        except httpx.ConnectError as exc:
            return "tls" if _caused_by(exc, ssl.SSLError) else "refused"
        except httpx.HTTPError:
            return "error"

    async def _post(self, http: httpx.AsyncClient, target: Target,
                    delivery: WebhookDelivery) -> str:
        body = delivery.payload
        headers = {
            "host": target.host,
            "content-type": "application/json",
            "user-agent": f"nexus-gateway/{__version__}",
            "x-nexus-event": delivery.event,
            "x-nexus-delivery": delivery.id,
            SIGNATURE_HEADER: signature(self.secret(delivery.webhook_id), int(time.time()), body),
        }
        extensions = {"sni_hostname": target.server_name} if target.server_name else None
        request = http.build_request("POST", target.url, content=body, headers=headers,
                                     extensions=extensions)
        response = await http.send(request, stream=True)  # the body is never read
        await response.aclose()
        return f"{response.status_code // 100}xx"

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: 4 times longer each time, at most an hour,
        give or take 20 %."""
        delay = min(self.retry_base_s * 4 ** (attempts - 1), MAX_BACKOFF_S)
        return delay * random.uniform(0.8, 1.2)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
