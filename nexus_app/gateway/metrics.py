"""Prometheus metrics: counts and totals only, never request text or identities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

if TYPE_CHECKING:
    from nexus_app.gateway.money.billing import BilledUsage
    from nexus_app.gateway.workers.coordinator import Coordinator


class Metrics:
    def __init__(self, coordinator: Coordinator) -> None:
        self.registry = CollectorRegistry()
        self.responses = Counter(
            "nexus_http_responses", "HTTP responses by status code", ["status"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "nexus_jobs", "Billed requests by outcome", ["outcome"], registry=self.registry
        )
        self.tokens = Counter(
            "nexus_tokens", "Tokens billed", ["direction"], registry=self.registry
        )
        self.credit = Counter(
            "nexus_credit_settled_base_units", "Credit charged, in base units",
            registry=self.registry,
        )
        self._by_status: dict[int, Any] = {}
        workers = Gauge("nexus_workers_online", "Connected workers", registry=self.registry)
        workers.set_function(lambda: len(coordinator.workers))
        queue = Gauge("nexus_queue_depth", "Requests waiting for a worker slot",
                      registry=self.registry)
        queue.set_function(coordinator.queue_depth)

    def count_response(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.responses.labels(str(status))
        child.inc()

    def record_settled(self, billed: BilledUsage) -> None:
        self.jobs.labels("completed").inc()
        self.tokens.labels("input").inc(billed.prompt_tokens)
        self.tokens.labels("output").inc(billed.completion_tokens)
        self.credit.inc(billed.cost)

    def render(self) -> bytes:
        return generate_latest(self.registry)
