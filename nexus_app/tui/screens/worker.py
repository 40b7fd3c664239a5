"""Worker: a switch that serves a model from this machine, the model choice (bundled and
GGUF files found in the models folder), live GPU stats (or why it is CPU only), jobs served,
tokens/s over time, earnings and the claim button."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label, Select, Sparkline, Static, Switch

from nexus_app.client.http import ClientError
from nexus_app.contracts import EarningsView
from nexus_app.tui.actions import bindings
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.worker.status import NodeStatus

if TYPE_CHECKING:
    from nexus_app.worker.hardware import GpuProbe
    from nexus_app.worker.models import LocalModel

HARDWARE_REFRESH_S = 2.0
EARNINGS_REFRESH_S = 3.0
HISTORY = 60  # tokens/s samples kept for the sparkline


def gpu_panel(probe: GpuProbe | None, accelerator_note: str) -> str:
    if probe is None:
        return "Reading the hardware…"
    gpus = probe.snapshot()
    if not gpus:
        return accelerator_note or f"CPU only: {probe.reason or 'no NVIDIA GPU found'}"
    lines = []
    for index, gpu in enumerate(gpus):
        used = gpu.vram_total_mb - gpu.vram_free_mb
        parts = [f"GPU {index}  {gpu.name}", f"VRAM {used}/{gpu.vram_total_mb} MiB"]
        if gpu.utilization_pct is not None:
            parts.append(f"util {gpu.utilization_pct}%")
        if gpu.temperature_c is not None:
            parts.append(f"{gpu.temperature_c} °C")
        if gpu.power_w is not None:
            parts.append(f"{gpu.power_w} W")
        lines.append(" · ".join(parts))
    if gpus and gpus[0].driver:
        lines.append(f"driver {gpus[0].driver}")
    return "\n".join(lines)


class WorkerScreen(NexusScreen):
    BINDINGS = bindings("worker")

    def __init__(self) -> None:
        super().__init__()
        self.local_models: dict[str, LocalModel] = {}
        self.probe: GpuProbe | None = None
        self.cpu_note = ""
        self.rates: list[float] = [0.0]

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield Label("Serve from this machine")
            yield Switch(False, id="worker-switch")
            yield Select[str]([], prompt="finding models…", id="worker-model")
        yield Static("", id="worker-state", classes="panel")
        yield Label("Hardware", classes="section")
        yield Static("Reading the hardware…", id="gpu", classes="panel")
        yield Label("Tokens/s", classes="section")
        yield Sparkline(self.rates, id="tps")
        yield Label("Earnings", classes="section")
        with Horizontal(classes="form"):
            yield Static("", id="earnings")
            yield Button("Claim", variant="success", id="claim")

    def on_mount(self) -> None:
        super().on_mount()
        self.find_models()
        self.open_probe()
        self.set_interval(HARDWARE_REFRESH_S, self._show_hardware)
        self.set_interval(EARNINGS_REFRESH_S, self._tick_earnings)
        self.query_one("#worker-switch", Switch).value = self.nexus.worker_host.running
        self.watch(self.app, "node_status", self._show_state)

    def on_unmount(self) -> None:
        if self.probe is not None:
            self.probe.close()

    def on_online(self) -> None:
        self.refresh_earnings()

    # --- models and hardware --------------------------------------------------------------

    @work(thread=True, exclusive=True, group="worker-models")
    def find_models(self) -> None:
        from nexus_app.worker.models import bundled_model_path, describe, discover

        models = []
        bundled = bundled_model_path()
        if bundled is not None:
            models.append(describe(bundled, bundled=True))
        models.extend(discover(self.nexus.settings.models_path))
        self.app.call_from_thread(self._set_models, models)

    def _set_models(self, models: list[LocalModel]) -> None:
        self.local_models = {m.id: m for m in models}
        select = self.query_one("#worker-model", Select)
        select.set_options([(f"{m.id}{' (bundled)' if m.bundled else ''}", m.id)
                            for m in models])
        select.prompt = "choose a model" if models else "no GGUF model found"
        if models:
            select.value = models[0].id

    @work(thread=True, exclusive=True, group="worker-probe")
    def open_probe(self) -> None:
        from nexus_app.worker.hardware import GpuProbe, hardware
        from nexus_app.worker.llamacpp import gpu_offload_supported

        probe = GpuProbe(self.nexus.nvml)
        record = hardware(probe, gpu_offload_supported(), self.nexus.settings.threads or 1)
        self.app.call_from_thread(self._set_probe, probe, record.note)

    def _set_probe(self, probe: GpuProbe, note: str) -> None:
        self.probe, self.cpu_note = probe, note
        self._show_hardware()

    def _show_hardware(self) -> None:
        self.query_one("#gpu", Static).update(gpu_panel(self.probe, self.cpu_note))

    # --- the switch -----------------------------------------------------------------------

    @on(Switch.Changed, "#worker-switch")
    def _switched(self, event: Switch.Changed) -> None:
        if event.value == self.nexus.worker_host.running:
            return
        if event.value:
            self._start(event.switch)
        else:
            self._stop()

    def action_toggle_worker(self) -> None:
        switch = self.query_one("#worker-switch", Switch)
        switch.value = not switch.value

    def _start(self, switch: Switch) -> None:
        model = self.local_models.get(str(self.query_one("#worker-model", Select).value))
        connection = self.nexus.connection
        if model is None or connection.state != "online" or not connection.nexus:
            self.notify("Choose a model, and connect to a NEXUS gateway first",
                        severity="warning")
            switch.value = False
            return
        self.nexus.start_worker(connection.url, model)
        self._show_state(NodeStatus(state="starting"))

    @work(exclusive=True, group="worker-stop")
    async def _stop(self) -> None:
        self._show_state(NodeStatus(state="draining"))
        await self.nexus.worker_host.drain()

    def _show_state(self, status: NodeStatus | None) -> None:
        if status is None:  # the worker has not been switched on in this session
            self.query_one("#worker-state", Static).update("State       off")
            return
        lines = [f"State       {status.state}"
                 + (f" as {status.worker_id}" if status.worker_id else ""),
                 f"Jobs        {status.jobs_served} served, {status.jobs_active} active",
                 f"Tokens      {status.tokens_generated} generated, "
                 f"{status.tokens_per_s:.1f}/s now"]
        if status.last_error:
            lines.append(f"Last error  {status.last_error}")
        self.query_one("#worker-state", Static).update("\n".join(lines))
        if status.state == "online":
            self.rates = [*self.rates, status.tokens_per_s][-HISTORY:]
            self.query_one("#tps", Sparkline).data = self.rates
        if status.state == "stopped":
            self.query_one("#worker-switch", Switch).value = False

    # --- earnings -------------------------------------------------------------------------

    def _tick_earnings(self) -> None:
        if self.is_current and self.nexus.connection.nexus:
            self.refresh_earnings()

    @work(exclusive=True, group="earnings")
    async def refresh_earnings(self) -> None:
        try:
            earnings = await self.nexus.link.account_call(lambda c: c.worker_earnings())
        except ClientError as exc:
            self.query_one("#earnings", Static).update(f"unavailable: {exc.message}")
            return
        self.query_one("#earnings", Static).update(earnings_line(earnings))

    @on(Button.Pressed, "#claim")
    def action_claim(self) -> None:
        self.claim()

    @work(exclusive=True, group="claim")
    async def claim(self) -> None:
        try:
            keypair = self.nexus.link.keypair()  # creates its token account first if missing
            payout = await self.nexus.link.account_call(lambda c: c.claim(keypair))
        except ClientError as exc:
            self.report(exc, "Claim")
            return
        state = "paid" if payout.status == "paid" else "sent (not confirmed yet)"
        self.notify(f"{payout.amount_display} NEXUS {state} to the wallet", title="Claim")
        self.refresh_earnings()


def earnings_line(earnings: EarningsView) -> str:
    """The worker wallet's earnings, with the gateway's hold and bench when there are any."""
    line = (f"earned {earnings.earned_display} · paid {earnings.paid_display} · "
            f"paying {earnings.paying_display} · claimable {earnings.pending_display} NEXUS")
    held_until = earnings.claimable_from
    if held_until and held_until > time.time():
        line += f" · held until {time.strftime('%H:%M', time.localtime(held_until))} (new worker)"
    if earnings.state != "ok":
        line += f" · {earnings.state} after failed jobs: no jobs for now"
    return line
