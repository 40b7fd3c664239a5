"""Webhooks: accounts register endpoints, the gateway queues signed events for them in the
ledger database and delivers them in the background, retrying with backoff.

Delivery is at least once: an event whose attempt was cut short by a crash is sent again, so
receivers deduplicate by the event `id`. Each webhook's secret is derived from the gateway's
signing key and the webhook id (nothing secret is stored in the database); it is shown once,
when the webhook is created.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from nexus_app import __version__
from nexus_app.gateway.errors import BadRequest
from nexus_app.gateway.store import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    Store,
    Webhook,
    WebhookDelivery,
)
from nexus_app.ids import new_id
from nexus_app.webhooks import SIGNATURE_HEADER, signature

log = logging.getLogger(__name__)

EVENTS = ("deposit.credited", "balance.low", "key.created", "key.revoked", "model.unavailable")
MAX_WEBHOOKS_PER_ACCOUNT = 10
MAX_BACKOFF_S = 3600.0
BATCH = 32  # deliveries attempted at once


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


def check_url(url: str) -> str:
    """HTTPS anywhere, or plain HTTP to this machine (for local receivers and tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise BadRequest("A webhook URL must be https://, or http:// to a loopback address.",
                     param="url", code="invalid_webhook_url")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Webhooks:
    def __init__(self, store: Store, signing_key: bytes, *, max_attempts: int,
                 retry_base_s: float, timeout_s: float = 10.0) -> None:
        self.store = store
        self.signing_key = signing_key
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.timeout_s = timeout_s
        self.model_grace_s = 5.0  # a model must stay unserved this long to be reported
        self._accounts: set[str] = set()  # accounts with at least one webhook
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
        hook = Webhook(new_id("wh"), account, check_url(url), tuple(dict.fromkeys(events)),
                       balance_low_threshold, time.time())
        await self.store.add_webhook(hook)
        self._accounts.add(account)
        return hook, self.secret(hook.id)

    async def delete(self, account: str, webhook_id: str) -> bool:
        deleted = await self.store.delete_webhook(account, webhook_id)
        if deleted and not await self.store.webhooks(account):
            self._accounts.discard(account)
        return deleted

    # events ------------------------------------------------------------------------------------

    async def emit(self, account: str, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for each of the account's webhooks that subscribed to it."""
        if account in self._accounts:
            hooks = [h for h in await self.store.webhooks(account) if event in h.events]
            await self._queue(hooks, event, data, account)

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for every webhook that subscribed to it (network-wide events)."""
        hooks = [h for h in await self.store.webhooks() if event in h.events]
        await self._queue(hooks, event, data, None)

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

    async def model_gone(self, model: str, still_gone: Callable[[], bool]) -> None:
        """Report model.unavailable if `still_gone()` holds after the grace period (a worker
        reconnecting at once is not an outage)."""
        await asyncio.sleep(self.model_grace_s)
        if still_gone():
            await self.broadcast("model.unavailable", {"model": model})

    async def _queue(self, hooks: list[Webhook], event: str, data: dict[str, Any],
                     account: str | None) -> None:
        if not hooks:
            return
        now = time.time()
        event_id = new_id("evt")
        deliveries = []
        for hook in hooks:
            payload = orjson.dumps({"id": event_id, "type": event, "created": int(now),
                                    "account": account or hook.account, "data": data})
            deliveries.append(WebhookDelivery(new_id("whd"), hook.id, event_id, event, payload,
                                              DELIVERY_PENDING, 0, now, now))
        await self.store.add_deliveries(deliveries)
        self._wake.set()

    # delivery ----------------------------------------------------------------------------------

    async def run(self, poll_s: float = 1.0) -> None:
        """Deliver due events until cancelled; woken at once when an event is queued."""
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            while True:
                self._wake.clear()
                try:
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
        body = delivery.payload
        headers = {
            "content-type": "application/json",
            "user-agent": f"nexus-gateway/{__version__}",
            "x-nexus-event": delivery.event,
            "x-nexus-delivery": delivery.id,
            SIGNATURE_HEADER: signature(self.secret(delivery.webhook_id), int(time.time()), body),
        }
        status: int | None = None
        try:
            response = await http.post(url, content=body, headers=headers)
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        attempts = delivery.attempts + 1
        if error is None:
            await self.store.record_attempt(delivery.id, DELIVERY_DELIVERED, time.time(),
                                            status, None)
        elif attempts >= self.max_attempts:
            log.warning("webhook delivery %s failed for good: %s", delivery.id, error)
            await self.store.record_attempt(delivery.id, DELIVERY_FAILED, time.time(),
                                            status, error)
        else:
            await self.store.record_attempt(delivery.id, DELIVERY_PENDING,
                                            time.time() + self.backoff(attempts), status, error)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: 4 times longer each time, at most an hour,
        give or take 20 %."""
        delay = min(self.retry_base_s * 4 ** (attempts - 1), MAX_BACKOFF_S)
        return delay * random.uniform(0.8, 1.2)
