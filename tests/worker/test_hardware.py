"""Hardware detection: the real machine (no NVIDIA GPU here) and a fake NVML with two GPUs."""

from __future__ import annotations

from nexus_app.worker.hardware import GpuProbe, hardware
from nexus_app.worker.llamacpp import gpu_offload_supported
from tests.support.fake_nvml import FakeGpu, FakeNvml

GIB = 1024**3


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu("NVIDIA H100 80GB HBM3", 80 * GIB, 60 * GIB, 35, 51, 312_456),
            FakeGpu("NVIDIA GeForce RTX 4090", 24 * GIB, 20 * GIB, 3, 38, 19_000, {"power"}),
        ]
    )


def test_real_machine_without_gpu_is_cpu_only() -> None:
    probe = GpuProbe()
    assert not probe.available
    assert probe.reason
    assert probe.snapshot() == []
    record = hardware(probe, gpu_offload=gpu_offload_supported(), threads=6)
    assert record.accelerator == "cpu"
    assert record.gpus == []
    assert record.cpu_threads == 6
    assert record.note == f"CPU only: NVML unavailable ({probe.reason})"
    probe.close()


def test_fake_gpus_are_reported_with_every_field() -> None:
    probe = GpuProbe(two_gpus())
    first, second = probe.snapshot()
    assert first.name == "NVIDIA H100 80GB HBM3"
    assert (first.vram_total_mb, first.vram_free_mb) == (81920, 61440)
    assert first.driver == "550.54.15"
    assert (first.utilization_pct, first.temperature_c, first.power_w) == (35, 51, 312.5)
    assert second.name == "NVIDIA GeForce RTX 4090"
    assert (second.vram_total_mb, second.utilization_pct, second.temperature_c) == (24576, 3, 38)
    assert second.power_w is None


def test_cuda_when_offload_is_built_in_and_gpus_exist() -> None:
    record = hardware(GpuProbe(two_gpus()), gpu_offload=True, threads=8)
    assert record.accelerator == "cuda"
    assert [gpu.name for gpu in record.gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090"]
    assert record.note == ""


def test_gpu_without_offload_support_stays_on_cpu() -> None:
    record = hardware(GpuProbe(two_gpus()), gpu_offload=False, threads=8)
    assert record.accelerator == "cpu"
    assert record.note.startswith("CPU only: llama-cpp-python was built without GPU support")
    assert "NVIDIA H100 80GB HBM3" in record.note


def test_no_gpu_found() -> None:
    record = hardware(GpuProbe(FakeNvml([])), gpu_offload=True, threads=2)
    assert record.accelerator == "cpu"
    assert record.note == "CPU only: no NVIDIA GPU found"


def test_nvml_init_failure_makes_probe_unavailable() -> None:
    probe = GpuProbe(FakeNvml([], init_error="Driver Not Loaded"))
    assert not probe.available
    assert probe.snapshot() == []
    record = hardware(probe, gpu_offload=True, threads=4)
    assert record.accelerator == "cpu"
    assert record.note == "CPU only: NVML unavailable (Driver Not Loaded)"


def test_close_shuts_nvml_down() -> None:
    nvml = two_gpus()
    probe = GpuProbe(nvml)
    assert nvml.initialised
    probe.close()
    assert not nvml.initialised
    assert not probe.available
    assert probe.snapshot() == []
