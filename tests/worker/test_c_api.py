"""The llama.cpp C API the worker calls matches the installed llama-cpp-python, and a change
in it is caught (an upgrade must fail here, not in the engine thread)."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import llama_cpp

from nexus_app.worker import c_api
from nexus_app.worker.llamacpp import binding_problems


def test_the_installed_binding_has_every_signature_and_field_the_worker_uses() -> None:
    assert c_api.problems() == []
    assert binding_problems() == ()
    assert llama_cpp.__version__ in c_api.TESTED_VERSIONS


def test_a_changed_argument_list_a_missing_function_or_field_is_reported() -> None:
    """A binding as the one that killed the engine: penalties without `n_vocab`."""
    penalties = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int32, ctypes.c_float,
                                 ctypes.c_float, ctypes.c_float)
    old = {name: getattr(llama_cpp, name) for name in c_api.SIGNATURES}
    old["llama_sampler_init_penalties"] = SimpleNamespace(
        argtypes=penalties._argtypes_, restype=ctypes.POINTER(llama_cpp.llama_sampler))
    del old["llama_get_logits_ith"]

    class Params(ctypes.Structure):
        _fields_ = [("n_ctx", ctypes.c_uint32)]

    binding = SimpleNamespace(**old, llama_model_params=llama_cpp.llama_model_params,
                              llama_context_params=Params, llama_batch=llama_cpp.llama_batch)
    found = c_api.problems(binding)
    assert "llama_sampler_init_penalties is *llama_sampler(i32, f32, f32, f32), expected " \
           "*llama_sampler(i32, i32, f32, f32, f32)" in found
    assert "llama_get_logits_ith is missing" in found
    assert "llama_context_params has no field n_batch" in found
