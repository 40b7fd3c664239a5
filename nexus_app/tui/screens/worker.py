"""Worker: a switch that serves a model from this machine, the model choice (bundled and
GGUF files found in the models folder) and its loading progress; a dashboard of the last hour
(tokens/s, GPU utilisation, VRAM, temperature, power) and of earnings (per hour from the
gateway, per day, jobs per model, the current rate), live GPU stats (or why it is CPU only),
and the claim button."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Button, Label, ProgressBar, Select, Static, Switch

from nexus_app.client.http import ClientError
from nexus_app.contracts import EarningsHistory, EarningsView
from nexus_app.tui.actions import bindings
from nexus_app.tui.plots import EarningsPlot, SeriesPlot
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.tui.telemetry import SERIES, Sample, Telemetry, earnings_summary
from nexus_app.worker.status import NodeStatus

if TYPE_CHECKING:
    from nexus_app.protocol import GpuInfo
    from nexus_app.worker.hardware import GpuProbe
    from nexus_app.worker.models import LocalModel

HARDWARE_REFRESH_S = 2.0
EARNINGS_REFRESH_S = 3.0
PLOT_POINTS = 120  # per series: about two a cell of a plot's width (braille dots)
HISTORY_HOURS = 48  # earnings asked of the gateway: the bars' 24 h, and today and yesterday


def gpu_panel(gpus: list[GpuInfo] | None, reason: str, accelerator_note: str) -> str:
    """The GPUs' stats now, or why there are none (`gpus` None: not read yet)."""
    if gpus is None:
        return "Reading the hardware…"
    if not gpus:
        return accelerator_note or f"CPU only: {reason or 'no NVIDIA GPU found'}"
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


def sample_of(at: float, gpus: list[GpuInfo], status: NodeStatus | None) -> Sample:
    """One dashboard reading: the node's tokens/s while it serves, the first GPU's stats."""
    tokens = status.tokens_per_s if status is not None and status.state == "online" else None
    gpu = gpus[0] if gpus else None
    if gpu is None:
        return Sample(at, tokens)
    return Sample(at, tokens, gpu.utilization_pct, gpu.vram_total_mb - gpu.vram_free_mb,
                  gpu.temperature_c, gpu.power_w)


def state_lines(status: NodeStatus | None) -> str:
    if status is None:  # the worker has not been switched on in this session
        return "State   off"
    lines = [f"State   {status.state}",
             f"Jobs    {status.jobs_served} served, {status.jobs_active} active",
             f"Tokens  {status.tokens_generated} · {status.tokens_per_s:.1f}/s now"]
    if status.worker_id:
        lines.insert(1, f"As      {status.worker_id}")
    if status.last_error:
        lines.append(f"Error   {status.last_error}")
    return "\n".join(lines)


class WorkerScreen(NexusScreen):
    BINDINGS = bindings("worker")

    def __init__(self) -> None:
        super().__init__()
        self.local_models: dict[str, LocalModel] = {}
        self.probe: GpuProbe | None = None
        self.cpu_note = ""
        self.telemetry = Telemetry()
        self.history: EarningsHistory | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="form"):
            yield Label("Serve from this machine")
            yield Switch(False, id="worker-switch")
            yield Select[str]([], prompt="finding models…", id="worker-model")
            yield Button("Claim", variant="success", id="claim")
        with Horizontal(id="model-load"):
            yield Label("", id="model-load-label")
            yield ProgressBar(show_eta=False, id="model-load-bar")
        with Horizontal(id="worker-panels"):
            yield Static("", id="worker-state", classes="panel")
            yield Static("Reading the hardware…", id="gpu", classes="panel")
            yield Static("", id="earnings-summary", classes="panel")
        yield Static("", id="earnings")
        with Grid(id="plots"):
            for field, (title, unit) in SERIES.items():
                yield SeriesPlot(title, unit, id=f"plot-{field.replace('_', '-')}")
            yield EarningsPlot(id="plot-earnings")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#model-load").display = False
        self.find_models()
        self.open_probe()
        self.set_interval(HARDWARE_REFRESH_S, self._tick_hardware)
        self.set_interval(EARNINGS_REFRESH_S, self._tick_earnings)
        self.query_one("#worker-switch", Switch).value = self.nexus.worker_host.running
        self.watch(self.app, "node_status", self._show_state)
        self.watch(self.app, "model_load", self._show_load)

    def on_unmount(self) -> None:
        if self.probe is not None:
            self.probe.close()

    def on_online(self) -> None:
        self.refresh_earnings()
        self.show_telemetry(self.nexus.clock())

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
        self._tick_hardware()

    def _tick_hardware(self) -> None:
        """Read the GPUs and the node's rate into the dashboard."""
        if self.probe is None:
            return
        gpus = self.probe.snapshot()
        self.query_one("#gpu", Static).update(gpu_panel(gpus, self.probe.reason, self.cpu_note))
        now = self.nexus.clock()
        self.telemetry.add(sample_of(now, gpus, self.nexus.node_status))
        self.show_telemetry(now)

    def show_telemetry(self, now: float) -> None:
        if not self.is_current:  # sampled all along, drawn when looked at
            return
        for field in SERIES:
            xs, ys = self.telemetry.series(field, now, PLOT_POINTS)
            self.query_one(f"#plot-{field.replace('_', '-')}", SeriesPlot).show(xs, ys)

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
        self.query_one("#worker-state", Static).update(state_lines(status))
        if status is not None and status.state == "stopped":
            self.query_one("#worker-switch", Switch).value = False
        self._show_summary()

    def _show_load(self, load: tuple[int, int] | None) -> None:
        """The model file being read (real progress), then llama.cpp loading it."""
        row = self.query_one("#model-load")
        row.display = load is not None
        if load is None:
            return
        done, total = load
        label = (f"Reading the model file: {done >> 20}/{total >> 20} MiB" if done < total
                 else "Loading the model into llama.cpp…")
        self.query_one("#model-load-label", Label).update(label)
        self.query_one("#model-load-bar", ProgressBar).update(total=total, progress=done)

    # --- earnings -------------------------------------------------------------------------

    def _tick_earnings(self) -> None:
        if self.is_current and self.nexus.connection.nexus:
            self.refresh_earnings()

    @work(exclusive=True, group="earnings")
    async def refresh_earnings(self) -> None:
        try:
            earnings = await self.nexus.link.account_call(lambda c: c.worker_earnings())
            history = await self.nexus.link.account_call(
                lambda c: c.earnings_history(HISTORY_HOURS))
        except ClientError as exc:
            self.query_one("#earnings", Static).update(f"unavailable: {exc.message}")
            return
        now = self.nexus.clock()
        self.query_one("#earnings", Static).update(earnings_line(earnings, now))
        self.show_earnings(history, now)

    def show_earnings(self, history: EarningsHistory, now: float) -> None:
        self.history = history
        self.query_one("#plot-earnings", EarningsPlot).show(history.data, now,
                                                            history.decimals)
        self._show_summary(now)

    def _show_summary(self, now: float | None = None) -> None:
        self.query_one("#earnings-summary", Static).update(earnings_summary(
            self.history, self.nexus.jobs_by_model, self.nexus.clock() if now is None else now))

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


def earnings_line(earnings: EarningsView, now: float) -> str:
    """The worker wallet's earnings, with the gateway's hold and bench when there are any."""
    line = (f"earned {earnings.earned_display} · paid {earnings.paid_display} · "
            f"paying {earnings.paying_display} · claimable {earnings.pending_display} NEXUS")
    held_until = earnings.claimable_from
    if held_until and held_until > now:
        line += f" · held until {time.strftime('%H:%M', time.localtime(held_until))} (new worker)"
    if earnings.state != "ok":
        line += f" · {earnings.state} after failed jobs: no jobs for now"
    return line
