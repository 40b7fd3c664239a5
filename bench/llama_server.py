"""The llama.cpp server the benchmarks compare with: built once from the llama.cpp sources
vendored in the installed llama-cpp-python's sdist (so both run the same llama.cpp), cached
in `~/.cache/nexus-app/bench/`, and started on the bundled model like the worker.

The first build takes about ten minutes on two cores; `python bench/llama_server.py` builds it
ahead and prints its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import llama_cpp

from nexus_app.worker.llamacpp import cpu_has_amx

CACHE = Path.home() / ".cache" / "nexus-app" / "bench" / f"llama.cpp-{llama_cpp.__version__}"


def binary() -> Path:
    """The cached llama-server, built first if it is not there."""
    built = CACHE / "build" / "bin" / "llama-server"
    if built.exists():
        return built
    CACHE.mkdir(parents=True, exist_ok=True)
    version = llama_cpp.__version__
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", f"llama-cpp-python=={version}", "-d", str(CACHE)], check=True)
    sdist = next(CACHE.glob(f"llama_cpp_python-{version}.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(CACHE, filter="data")
    source = CACHE / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    subprocess.run(["cmake", "-S", str(source), "-B", str(CACHE / "build"),
                    "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON"], check=True)
    subprocess.run(["cmake", "--build", str(CACHE / "build"), "--target", "llama-server",
                    "-j", str(os.cpu_count() or 1)], check=True)
    return built


def start(path: Path, model: Path, *, port: int, slots: int, context_per_slot: int,
          threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """The server on `model` with the worker's slots, context and threads; its base URL.
    On a CPU with AMX it runs without repacked weights (llama.cpp's extra buffer types, whose
    AMX kernels die with SIGILL where the hypervisor does not enable AMX), as the worker does."""
    no_repack = ["--no-repack"] if cpu_has_amx() else []
    process = subprocess.Popen(
        [str(path), "-m", str(model), "--port", str(port), "-np", str(slots),
         "-c", str(slots * context_per_slot), "-t", str(threads), "--no-webui", *no_repack],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if process.poll() is not None:
            raise RuntimeError("the llama.cpp server exited")
        try:
            if httpx.get(url + "/health", timeout=1).is_success:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the llama.cpp server did not start")


if __name__ == "__main__":
    print(binary())
