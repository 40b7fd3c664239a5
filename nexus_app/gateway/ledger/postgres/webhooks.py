"""`WebhookStore` on PostgreSQL: webhooks, their deliveries, and the models each account was
served."""

from __future__ import annotations

from typing import Any

import asyncpg

from nexus_app.gateway.ledger.postgres.base import PostgresBase
from nexus_app.gateway.ledger.postgres.deposits import _count
from nexus_app.gateway.ledger.records import DeliveryStatus, Webhook, WebhookDelivery


class PostgresWebhooks(PostgresBase):
    _HOOK_COLUMNS = "id, account, url, events, balance_low_threshold, created_at, balance_low_sent"
    _DELIVERY_COLUMNS = ("id, webhook_id, event_id, event, payload, status, attempts,"
                         " next_attempt_at, created_at, last_outcome")

    @staticmethod
    def _webhook(row: Any) -> Webhook:
        hook_id, account, url, events, threshold, created_at, sent = row
        return Webhook(hook_id, account, url, tuple(events.split()), threshold, created_at,
                       bool(sent))

    async def add_webhook(self, webhook: Webhook) -> None:
        await self._tx(lambda conn: conn.execute(
            f"INSERT INTO webhooks ({self._HOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            webhook.id, webhook.account, webhook.url, " ".join(webhook.events),
            webhook.balance_low_threshold, webhook.created_at, int(webhook.balance_low_sent)))

    async def webhooks(self, account: str | None = None) -> list[Webhook]:
        where, args = ("WHERE account = $1", (account,)) if account is not None else ("", ())
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._HOOK_COLUMNS} FROM webhooks {where} ORDER BY created_at", *args))
        return [self._webhook(row) for row in rows]

    async def delete_webhook(self, account: str, webhook_id: str) -> bool:
        status = await self._tx(lambda conn: conn.execute(
            "DELETE FROM webhooks WHERE id = $1 AND account = $2", webhook_id, account))
        return _count(status) > 0

    async def set_balance_low_sent(self, webhook_id: str, sent: bool) -> None:
        await self._tx(lambda conn: conn.execute(
            "UPDATE webhooks SET balance_low_sent = $1 WHERE id = $2", int(sent), webhook_id))

    async def add_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        if not deliveries:
            return
        await self._tx(lambda conn: conn.executemany(
            f"INSERT INTO webhook_deliveries ({self._DELIVERY_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            [(d.id, d.webhook_id, d.event_id, d.event, d.payload, str(d.status), d.attempts,
              d.next_attempt_at, d.created_at, d.last_outcome) for d in deliveries]))

    async def due_deliveries(self, now: float, limit: int) -> list[tuple[WebhookDelivery, str]]:
        columns = ", ".join(f"d.{c.strip()}" for c in self._DELIVERY_COLUMNS.split(","))
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {columns}, w.url FROM webhook_deliveries d"
            " JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = $1 AND d.next_attempt_at <= $2 ORDER BY d.next_attempt_at"
            " LIMIT $3",
            DeliveryStatus.PENDING.value, now, limit))
        return [(_delivery(row[:-1]), row[-1]) for row in rows]

    async def record_attempt(self, delivery_id: str, status: DeliveryStatus,
                             next_attempt_at: float, outcome: str) -> None:
        await self._tx(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1,"
            " next_attempt_at = $2, last_outcome = $3 WHERE id = $4",
            str(status), next_attempt_at, outcome, delivery_id))

    async def deliveries(self, webhook_id: str, limit: int) -> list[WebhookDelivery]:
        rows = await self._read(lambda conn: conn.fetch(
            f"SELECT {self._DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1"
            " ORDER BY created_at DESC LIMIT $2",
            webhook_id, limit))
        return [_delivery(row) for row in rows]

    async def note_model_served(self, account: str, model: str, at: float) -> None:
        await self._tx(lambda conn: conn.execute(
            "INSERT INTO webhook_models (account, model, served_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (account, model) DO UPDATE SET served_at = excluded.served_at",
            account, model, at))

    async def claim_model_alerts(self, model: str, alerted_before: float,
                                 now: float) -> list[str]:
        # one statement: two replicas claiming at once each get a disjoint set of accounts
        rows = await self._tx(lambda conn: conn.fetch(
            "UPDATE webhook_models SET alerted_at = $3 WHERE model = $1"
            " AND (alerted_at IS NULL OR alerted_at <= $2) RETURNING account",
            model, alerted_before, now))
        return [row[0] for row in rows]

    async def forget_models_served(self, account: str) -> None:
        await self._tx(lambda conn: conn.execute(
            "DELETE FROM webhook_models WHERE account = $1", account))

    async def prune_webhooks(self, before: float) -> int:
        async def body(conn: asyncpg.Connection) -> int:
            deleted = await conn.execute(
                "DELETE FROM webhook_deliveries WHERE status IN ($1, $2)"
                " AND next_attempt_at < $3",
                DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, before)
            await conn.execute("DELETE FROM webhook_models WHERE served_at < $1", before)
            return _count(deleted)

        return await self._tx(body)


def _delivery(row: Any) -> WebhookDelivery:
    delivery_id, webhook_id, event_id, event, payload, status, *rest = row
    return WebhookDelivery(delivery_id, webhook_id, event_id, event, bytes(payload),
                           DeliveryStatus(status), *rest)
