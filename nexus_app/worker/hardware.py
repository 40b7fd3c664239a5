"""The worker's hardware: NVIDIA GPUs through NVML, or a CPU-only record saying why."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from nexus_app.protocol import MAX_GPUS, MAX_NOTE_LENGTH, GpuInfo, Hardware

T = TypeVar("T")
_MIB = 1024 * 1024


class GpuProbe:
    """Reads the GPUs of this machine through NVML; never raises.

    When NVML cannot be used (no library, no driver) the probe is unavailable, `reason` says
    why and `snapshot()` returns an empty list.
    """

    def __init__(self, nvml: Any = None) -> None:
        """Open NVML; `nvml` is the pynvml module (imported when not given) or a stand-in."""
        self.reason = ""
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._driver = ""
        try:
            module = nvml if nvml is not None else importlib.import_module("pynvml")
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
            return
        try:
            module.nvmlInit()
        except module.NVMLError as exc:
            self.reason = str(exc) or type(exc).__name__
            return
        self._nvml = module
        try:
            count = module.nvmlDeviceGetCount()
            self._handles = [module.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except module.NVMLError as exc:
            self.reason = f"cannot list GPUs: {exc}"
            self.close()
            return
        self._driver = _text(self._query(module.nvmlSystemGetDriverVersion)) or ""

    @property
    def available(self) -> bool:
        """Whether NVML is open."""
        return self._nvml is not None

    def snapshot(self) -> list[GpuInfo]:
        """The current state of every GPU; a query a GPU does not support gives None."""
        if self._nvml is None:
            return []
        return [self._gpu(handle) for handle in self._handles]

    def close(self) -> None:
        """Shut NVML down; later snapshots are empty."""
        if self._nvml is None:
            return
        self._query(self._nvml.nvmlShutdown)
        self._nvml = None
        self._handles = []

    def _gpu(self, handle: Any) -> GpuInfo:
        nvml = self._nvml
        memory = self._query(nvml.nvmlDeviceGetMemoryInfo, handle)
        utilization = self._query(nvml.nvmlDeviceGetUtilizationRates, handle)
        temperature = self._query(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        power_mw = self._query(nvml.nvmlDeviceGetPowerUsage, handle)
        return GpuInfo(
            name=_text(self._query(nvml.nvmlDeviceGetName, handle)) or "unknown NVIDIA GPU",
            vram_total_mb=memory.total // _MIB if memory else 0,
            vram_free_mb=memory.free // _MIB if memory else 0,
            driver=self._driver,
            utilization_pct=utilization.gpu if utilization else None,
            temperature_c=temperature,
            power_w=None if power_mw is None else round(power_mw / 1000, 1),
        )

    def _query(self, function: Callable[..., T], *args: Any) -> T | None:
        try:
            return function(*args)
        except self._nvml.NVMLError:
            return None


def hardware(probe: GpuProbe, gpu_offload: bool, threads: int) -> Hardware:
    """The worker's compute record: CUDA when llama.cpp can offload and a GPU is present."""
    gpus = probe.snapshot()[:MAX_GPUS]  # what the protocol carries
    if not probe.available:
        note = f"CPU only: NVML unavailable ({probe.reason})"
    elif not gpus:
        note = "CPU only: no NVIDIA GPU found"
    elif not gpu_offload:
        names = ", ".join(gpu.name for gpu in gpus)
        note = f"CPU only: llama-cpp-python was built without GPU support (GPU found: {names})"
    else:
        return Hardware(accelerator="cuda", gpus=gpus, cpu_threads=threads)
    return Hardware(accelerator="cpu", cpu_threads=threads, note=note[:MAX_NOTE_LENGTH])


def _text(value: str | bytes | None) -> str | None:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
