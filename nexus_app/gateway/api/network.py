"""Public routes about the network: models served now, throughput, health and metrics."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response

from nexus_app.contracts import ModelList, ModelPricing, ModelView, ModelWorkers, NetworkStats
from nexus_app.gateway.api.deps import GatewayDep
from nexus_app.gateway.errors import NotFound
from nexus_app.gateway.service import Gateway
from nexus_app.protocol import ModelCard

router = APIRouter()


def _model_view(gateway: Gateway, card: ModelCard, workers: int) -> ModelView:
    price = gateway.prices.for_model(card.id)
    return ModelView(
        id=card.id,
        created=int(gateway.coordinator.first_seen.get(card.id, 0)),
        owned_by="nexus",
        context_length=card.context_length,
        workers=workers,
        quantization=card.quantization,
        parameters=card.parameters,
        pricing=ModelPricing(
            decimals=gateway.settings.token_decimals,
            per_request=price.per_request,
            input_per_million=price.input_per_million,
            output_per_million=price.output_per_million,
        ),
    )


@router.get("/v1/models", tags=["network"])
async def list_models(gateway: GatewayDep) -> ModelList:
    """Models served by online workers now, with their prices."""
    cards = gateway.coordinator.model_cards()
    return ModelList(
        data=[_model_view(gateway, card, n) for _, (card, n) in sorted(cards.items())],
    )


@router.get("/v1/models/{model_id}", tags=["network"])
async def get_model(model_id: str, gateway: GatewayDep) -> ModelView:
    """One model served now."""
    found = gateway.coordinator.model_cards().get(model_id)
    if found is None:
        raise NotFound(f"The model '{model_id}' is not served now.", param="model",
                       code="model_not_found")
    return _model_view(gateway, *found)


@router.get("/v1/network/stats", tags=["network"])
async def network_stats(gateway: GatewayDep) -> NetworkStats:
    """Workers online (by accelerator; `workers_benched`: cooling down or paused after failed
    jobs), models, jobs per minute and tokens per second."""
    coordinator = gateway.coordinator
    workers = list(coordinator.workers.values())
    return NetworkStats(
        workers_online=len(workers),
        accelerators=dict(Counter(w.hardware.accelerator for w in workers)),
        gpus=sum(len(w.hardware.gpus) for w in workers),
        slots_total=sum(w.slots for w in workers),
        slots_busy=sum(len(w.jobs) for w in workers),
        workers_benched=sum(not coordinator.health.available(w.wallet) for w in workers),
        queue_depth=coordinator.queue_depth(),
        jobs_per_min=coordinator.jobs_per_min.total(),
        tokens_per_s=round(coordinator.tokens_per_min.total() / 60, 2),
        models=[ModelWorkers(id=model, workers=n)
                for model, (_, n) in sorted(coordinator.model_cards().items())],
    )


_HEALTH = {"type": "object", "required": ["status", "workers_online"],
           "properties": {"status": {"type": "string"}, "workers_online": {"type": "integer"}}}


@router.get("/health", tags=["network"], responses={
    200: {"description": "Ready", "content": {"application/json": {"schema": _HEALTH}}},
    503: {"description": "The ledger does not answer",
          "content": {"application/json": {"schema": _HEALTH}}},
})
async def health(gateway: GatewayDep) -> Response:
    """Liveness and readiness: 200 when the ledger answers."""
    try:
        await gateway.store.ping()
        status, code = "ok", 200
    except Exception:
        status, code = "ledger unavailable", 503
    body = f'{{"status":"{status}","workers_online":{len(gateway.coordinator.workers)}}}'
    return Response(body, status_code=code, media_type="application/json")


@router.get("/metrics", tags=["network"], response_class=PlainTextResponse)
async def metrics(gateway: GatewayDep) -> Response:
    """Prometheus metrics (text exposition format)."""
    return PlainTextResponse(gateway.metrics.render(),
                             media_type="text/plain; version=0.0.4")
