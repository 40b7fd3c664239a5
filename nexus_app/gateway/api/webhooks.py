"""Webhook routes: register an endpoint (its signing secret is in that response only), list
and delete them, and read each one's delivery log. Like API keys, webhooks are managed with
the wallet's sign-in session: an API key (which may sit in an app's config) cannot point the
account's events somewhere else."""

from __future__ import annotations

from fastapi import APIRouter, Query

from nexus_app.contracts import (
    NewWebhook,
    WebhookDeleted,
    WebhookDeliveryList,
    WebhookDeliveryView,
    WebhookList,
    WebhookView,
)
from nexus_app.gateway.api.deps import GatewayDep, SessionCaller
from nexus_app.gateway.api.schemas import WebhookCreate
from nexus_app.gateway.errors import BadRequest, NotFound
from nexus_app.gateway.ledger.records import Webhook, WebhookDelivery
from nexus_app.gateway.notify.delivery import EVENTS, OUTCOMES
from nexus_app.gateway.service import Gateway
from nexus_app.units import AmountError, to_base_units

router = APIRouter(tags=["webhooks"])


def _view(gateway: Gateway, hook: Webhook) -> WebhookView:
    threshold = hook.balance_low_threshold
    return WebhookView(
        id=hook.id, url=hook.url, events=list(hook.events), balance_low_threshold=threshold,
        balance_low_threshold_display=None if threshold is None
        else gateway.display(threshold),
        created_at=int(hook.created_at),
    )


def _delivery_view(delivery: WebhookDelivery) -> WebhookDeliveryView:
    return WebhookDeliveryView(
        id=delivery.id, event_id=delivery.event_id, event=delivery.event,
        status=delivery.status, attempts=delivery.attempts,
        last_status=delivery.last_outcome,
        last_error=OUTCOMES.get(delivery.last_outcome or "2xx", "delivery failed"),
        created_at=int(delivery.created_at),
        next_attempt_at=int(delivery.next_attempt_at)
        if delivery.status == "pending" else None,
    )


@router.post("/v1/webhooks")
async def create_webhook(body: WebhookCreate, caller: SessionCaller,
                         gateway: GatewayDep) -> NewWebhook:
    """Register a webhook. Its signing `secret` is in this response only; store it now."""
    threshold = None
    if body.balance_low_threshold is not None:
        try:
            threshold = to_base_units(body.balance_low_threshold,
                                      gateway.settings.token_decimals)
        except AmountError as exc:
            raise BadRequest(f"Invalid 'balance_low_threshold': {exc}.",
                             param="balance_low_threshold") from None
    events: list[str] = list(body.events or [])
    if not events:
        events = [e for e in EVENTS if e != "balance.low" or threshold is not None]
    hook, secret = await gateway.webhooks.register(caller.account, body.url, events, threshold)
    return NewWebhook(**_view(gateway, hook).model_dump(), secret=secret)


@router.get("/v1/webhooks")
async def list_webhooks(caller: SessionCaller, gateway: GatewayDep) -> WebhookList:
    """The account's webhooks (without their secrets)."""
    hooks = await gateway.store.webhooks(caller.account)
    return WebhookList(data=[_view(gateway, hook) for hook in hooks])


@router.delete("/v1/webhooks/{webhook_id}")
async def delete_webhook(webhook_id: str, caller: SessionCaller,
                         gateway: GatewayDep) -> WebhookDeleted:
    """Delete a webhook and its delivery log; nothing more is sent to it."""
    if not await gateway.webhooks.delete(caller.account, webhook_id):
        raise NotFound(f"No webhook '{webhook_id}' on this account.", param="webhook_id")
    return WebhookDeleted(id=webhook_id)


@router.get("/v1/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(
    webhook_id: str, caller: SessionCaller, gateway: GatewayDep,
    limit: int = Query(50, ge=1, le=500),
) -> WebhookDeliveryList:
    """The webhook's latest deliveries: event, status, attempts, and the last attempt's
    outcome as a class (`2xx`, `4xx`, `timeout`, `refused`...) with the gateway's own words
    for it, never the receiver's answer."""
    if not any(hook.id == webhook_id for hook in await gateway.store.webhooks(caller.account)):
        raise NotFound(f"No webhook '{webhook_id}' on this account.", param="webhook_id")
    deliveries = await gateway.store.deliveries(webhook_id, limit)
    return WebhookDeliveryList(data=[_delivery_view(d) for d in deliveries])
