"""llama-cpp-python's own `Llama` (the bench's raw anchor, the third-party server in the
terminal app's tests) loads models with llama.cpp's extra CPU buffer types on; on an x86 CPU
with AMX whose hypervisor does not enable it, their AMX kernels die with SIGILL. This turns
them off there, as the worker does (`nexus_app.worker.llamacpp.cpu_has_amx`).
`python -m tests.support.llama_cpp_amx ARGS` runs `python -m llama_cpp.server ARGS` so."""

from __future__ import annotations

import runpy
import sys
from typing import Any

import llama_cpp.llama_cpp as binding

from nexus_app.worker.llamacpp import cpu_has_amx


def without_extra_buffers_on_amx() -> None:
    """Make `Llama` load models without extra CPU buffer types on an AMX CPU."""
    if not cpu_has_amx():
        return
    default = binding.llama_model_default_params

    def params() -> Any:
        chosen = default()
        chosen.use_extra_bufts = False
        return chosen

    binding.llama_model_default_params = params


if __name__ == "__main__":
    without_extra_buffers_on_amx()
    sys.argv[0] = "llama_cpp.server"
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
