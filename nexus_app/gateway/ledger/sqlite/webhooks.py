"""`WebhookStore` on SQLite: webhooks, their deliveries, and the models each account was
served."""

from __future__ import annotations

from typing import Any

from nexus_app.gateway.ledger.records import DeliveryStatus, Webhook, WebhookDelivery
from nexus_app.gateway.ledger.sqlite.base import SQLiteBase


class SQLiteWebhooks(SQLiteBase):
    _HOOK_COLUMNS = "id, account, url, events, balance_low_threshold, created_at, balance_low_sent"
    _DELIVERY_COLUMNS = ("id, webhook_id, event_id, event, payload, status, attempts,"
                         " next_attempt_at, created_at, last_outcome")

    @staticmethod
    def _webhook(row: tuple[Any, ...]) -> Webhook:
        hook_id, account, url, events, threshold, created_at, sent = row
        return Webhook(hook_id, account, url, tuple(events.split()), threshold, created_at,
                       bool(sent))

    async def add_webhook(self, webhook: Webhook) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO webhooks ({self._HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (webhook.id, webhook.account, webhook.url, " ".join(webhook.events),
                 webhook.balance_low_threshold, webhook.created_at, int(webhook.balance_low_sent)),
            )

    async def webhooks(self, account: str | None = None) -> list[Webhook]:
        where, args = ("WHERE account = ?", (account,)) if account is not None else ("", ())
        rows = self.db.execute(
            f"SELECT {self._HOOK_COLUMNS} FROM webhooks {where} ORDER BY created_at", args
        ).fetchall()
        return [self._webhook(row) for row in rows]

    async def delete_webhook(self, account: str, webhook_id: str) -> bool:
        with self._tx() as db:
            return bool(db.execute(
                "DELETE FROM webhooks WHERE id = ? AND account = ?", (webhook_id, account)
            ).rowcount)

    async def set_balance_low_sent(self, webhook_id: str, sent: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE webhooks SET balance_low_sent = ? WHERE id = ?",
                       (int(sent), webhook_id))

    async def add_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        with self._tx() as db:
            db.executemany(
                f"INSERT INTO webhook_deliveries ({self._DELIVERY_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.id, d.webhook_id, d.event_id, d.event, d.payload, d.status, d.attempts,
                  d.next_attempt_at, d.created_at, d.last_outcome)
                 for d in deliveries],
            )

    async def due_deliveries(self, now: float, limit: int) -> list[tuple[WebhookDelivery, str]]:
        columns = ", ".join(f"d.{c.strip()}" for c in self._DELIVERY_COLUMNS.split(","))
        rows = self.db.execute(
            f"SELECT {columns}, w.url FROM webhook_deliveries d"
            " JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = ? AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT ?",
            (DeliveryStatus.PENDING, now, limit),
        ).fetchall()
        return [(_delivery(row[:-1]), row[-1]) for row in rows]

    async def record_attempt(self, delivery_id: str, status: DeliveryStatus,
                             next_attempt_at: float, outcome: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
                " next_attempt_at = ?, last_outcome = ? WHERE id = ?",
                (status, next_attempt_at, outcome, delivery_id),
            )

    async def deliveries(self, webhook_id: str, limit: int) -> list[WebhookDelivery]:
        rows = self.db.execute(
            f"SELECT {self._DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?"
            " ORDER BY created_at DESC LIMIT ?",
            (webhook_id, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    async def note_model_served(self, account: str, model: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO webhook_models (account, model, served_at) VALUES (?, ?, ?)"
                " ON CONFLICT (account, model) DO UPDATE SET served_at = excluded.served_at",
                (account, model, at),
            )

    async def claim_model_alerts(self, model: str, alerted_before: float,
                                 now: float) -> list[str]:
        with self._tx() as db:
            accounts = [row[0] for row in db.execute(
                "SELECT account FROM webhook_models WHERE model = ?"
                " AND (alerted_at IS NULL OR alerted_at <= ?)", (model, alerted_before))]
            db.executemany("UPDATE webhook_models SET alerted_at = ? WHERE account = ?"
                           " AND model = ?", [(now, account, model) for account in accounts])
        return accounts

    async def forget_models_served(self, account: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM webhook_models WHERE account = ?", (account,))

    async def prune_webhooks(self, before: float) -> int:
        with self._tx() as db:
            deleted = db.execute(
                "DELETE FROM webhook_deliveries WHERE status IN (?, ?) AND next_attempt_at < ?",
                (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, before)).rowcount
            db.execute("DELETE FROM webhook_models WHERE served_at < ?", (before,))
        return int(deleted)


def _delivery(row: tuple[Any, ...]) -> WebhookDelivery:
    delivery_id, webhook_id, event_id, event, payload, status, *rest = row
    return WebhookDelivery(delivery_id, webhook_id, event_id, event, payload,
                           DeliveryStatus(status), *rest)
