"""A test double of the `pynvml` module: there is no NVIDIA GPU (nor NVML) in this environment.

It implements only the functions `nexus_app.worker.hardware` uses, over a list of fake GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    """Stands in for `pynvml.NVMLError`."""


@dataclass
class FakeGpu:
    """One fake GPU; queries named in `unsupported` raise NVMLError."""

    name: str
    total_bytes: int
    free_bytes: int
    utilization: int = 0
    temperature: int = 40
    power_mw: int = 100_000
    unsupported: set[str] = field(default_factory=set)


class FakeNvml:
    """The pynvml API over fake GPUs; `init_error` makes nvmlInit fail with that message."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = 0

    def __init__(
        self, gpus: list[FakeGpu], driver: str = "550.54.15", init_error: str | None = None
    ) -> None:
        self.gpus = gpus
        self.driver = driver
        self.init_error = init_error
        self.initialised = False

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return self._check(gpu, "name").name

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        self._check(gpu, "memory")
        used = gpu.total_bytes - gpu.free_bytes
        return SimpleNamespace(total=gpu.total_bytes, free=gpu.free_bytes, used=used)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._check(gpu, "utilization").utilization, memory=0)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._check(gpu, "temperature").temperature

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return self._check(gpu, "power").power_mw

    def _check(self, gpu: FakeGpu, query: str) -> FakeGpu:
        if not self.initialised:
            raise NVMLError("Uninitialized")
        if query in gpu.unsupported:
            raise NVMLError("Not Supported")
        return gpu
