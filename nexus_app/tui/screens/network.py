"""Network: workers online, models with their prices and workers, throughput."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Label, Static

from nexus_app.client.http import ClientError
from nexus_app.tui.actions import bindings
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.units import format_units

REFRESH_S = 5.0


class NetworkScreen(NexusScreen):
    BINDINGS = bindings("network")

    def compose_body(self) -> ComposeResult:
        yield Static("", id="network-summary", classes="panel")
        yield Label("Models", classes="section")
        yield DataTable(id="models", cursor_type="row")

    def on_mount(self) -> None:
        self.query_one("#models", DataTable).add_columns(
            "model", "workers", "context", "per request", "per 1M in", "per 1M out")
        super().on_mount()
        self.set_interval(REFRESH_S, self._tick)

    def _tick(self) -> None:
        if self.is_current and self.nexus.connection.state == "online":
            self.refresh_network()

    def on_online(self) -> None:
        self.refresh_network()

    @work(exclusive=True, group="network")
    async def refresh_network(self) -> None:
        link = self.nexus.link
        try:
            stats = await link.account_call(lambda c: c.network_stats())
            models = await link.account_call(lambda c: c.models())
        except ClientError as exc:
            self.query_one("#network-summary", Static).update(f"unavailable: {exc.message}")
            return
        accelerators = ", ".join(f"{n} {kind}" for kind, n in stats.accelerators.items())
        self.query_one("#network-summary", Static).update(
            f"Workers online  {stats.workers_online}"
            f"{f' ({accelerators})' if accelerators else ''}\n"
            f"Slots           {stats.slots_busy} busy of {stats.slots_total}, "
            f"{stats.queue_depth} queued\n"
            f"Throughput      {stats.jobs_per_min} jobs/min · {stats.tokens_per_s} tokens/s"
        )
        table = self.query_one("#models", DataTable)
        table.clear()
        for model in models:
            price = model.pricing
            table.add_row(model.id, model.workers, model.context_length,
                          *(format_units(units, price.decimals) + " NEXUS" for units in
                            (price.per_request, price.input_per_million,
                             price.output_per_million)))
