"""The llama.cpp C API the worker calls, as checked against llama-cpp-python 0.3.36.

llama-cpp-python binds the C functions with ctypes and changes their signatures from one
release to the next (`llama_sampler_init_penalties` gained an `n_vocab` argument, for one).
A call with the wrong arguments raises in the engine thread — or worse, passes garbage to C.
`problems()` compares every function and struct field the worker uses with the installed
binding, so a mismatch stops the worker at start with a clear message (and fails CI) instead
of failing requests in production.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp

TESTED_VERSIONS = ("0.3.36",)

# name: (return type, argument types), in the notation of `type_code`
SIGNATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "llama_backend_init": ("void", ()),
    "llama_log_set": ("void", ("callback", "void*")),
    "llama_supports_gpu_offload": ("bool", ()),
    "llama_model_default_params": ("llama_model_params", ()),
    "llama_model_load_from_file": ("void*", ("char*", "llama_model_params")),
    "llama_model_free": ("void", ("void*",)),
    "llama_model_get_vocab": ("void*", ("void*",)),
    "llama_model_n_ctx_train": ("i32", ("void*",)),
    "llama_model_n_embd": ("i32", ("void*",)),
    "llama_model_n_params": ("u64", ("void*",)),
    "llama_vocab_n_tokens": ("i32", ("void*",)),
    "llama_vocab_bos": ("i32", ("void*",)),
    "llama_vocab_eos": ("i32", ("void*",)),
    "llama_vocab_eot": ("i32", ("void*",)),
    "llama_vocab_is_eog": ("bool", ("void*", "i32")),
    "llama_vocab_type": ("i32", ("void*",)),
    "llama_vocab_get_attr": ("i32", ("void*", "i32")),
    "llama_vocab_get_text": ("char*", ("void*", "i32")),
    "llama_tokenize": ("i32", ("void*", "char*", "i32", "*i32", "i32", "bool", "bool")),
    "llama_token_to_piece": ("i32", ("void*", "i32", "char*", "i32", "i32", "bool")),
    "llama_context_default_params": ("llama_context_params", ()),
    "llama_init_from_model": ("void*", ("void*", "llama_context_params")),
    "llama_free": ("void", ("void*",)),
    "llama_n_ctx": ("u32", ("void*",)),
    "llama_get_memory": ("void*", ("void*",)),
    "llama_memory_seq_rm": ("bool", ("void*", "i32", "i32", "i32")),
    "llama_memory_clear": ("void", ("void*", "bool")),
    "llama_batch_init": ("llama_batch", ("i32", "i32", "i32")),
    "llama_batch_free": ("void", ("llama_batch",)),
    "llama_decode": ("i32", ("void*", "llama_batch")),
    "llama_get_logits_ith": ("*f32", ("void*", "i32")),
    "llama_get_embeddings_seq": ("*f32", ("void*", "i32")),
    "llama_sampler_chain_default_params": ("llama_sampler_chain_params", ()),
    "llama_sampler_chain_init": ("*llama_sampler", ("llama_sampler_chain_params",)),
    "llama_sampler_chain_add": ("void", ("*llama_sampler", "*llama_sampler")),
    "llama_sampler_free": ("void", ("*llama_sampler",)),
    "llama_sampler_sample": ("i32", ("*llama_sampler", "void*", "i32")),
    "llama_sampler_init_grammar": ("*llama_sampler", ("void*", "char*", "char*")),
    # n_vocab, penalty_last_n, penalty_repeat, penalty_freq, penalty_present
    "llama_sampler_init_penalties": ("*llama_sampler", ("i32", "i32", "f32", "f32", "f32")),
    "llama_sampler_init_greedy": ("*llama_sampler", ()),
    "llama_sampler_init_top_k": ("*llama_sampler", ("i32",)),
    "llama_sampler_init_top_p": ("*llama_sampler", ("f32", "u64")),
    "llama_sampler_init_temp": ("*llama_sampler", ("f32",)),
    "llama_sampler_init_dist": ("*llama_sampler", ("u32",)),
}

STRUCT_FIELDS: dict[str, tuple[str, ...]] = {
    "llama_model_params": ("n_gpu_layers", "use_extra_bufts"),
    "llama_context_params": ("n_ctx", "n_batch", "n_ubatch", "n_seq_max", "kv_unified",
                             "n_threads", "n_threads_batch", "no_perf", "embeddings",
                             "pooling_type", "flash_attn_type"),
    "llama_batch": ("n_tokens", "token", "pos", "n_seq_id", "seq_id", "logits"),
}


def type_code(kind: Any) -> str:
    """A ctypes type in the table's notation: void, bool, i32, u64, f32, char*, void*,
    *T for a pointer to T, callback, or a struct's name."""
    if kind is None:
        return "void"
    simple = {ctypes.c_bool: "bool", ctypes.c_float: "f32", ctypes.c_double: "f64",
              ctypes.c_char_p: "char*", ctypes.c_void_p: "void*"}
    if kind in simple:
        return simple[kind]
    if issubclass(kind, ctypes._Pointer):
        return "*" + type_code(kind._type_)
    if issubclass(kind, ctypes._CFuncPtr):  # type: ignore[attr-defined]
        return "callback"
    if issubclass(kind, ctypes.Structure):
        return kind.__name__
    signed = kind(-1).value < 0
    return f"{'i' if signed else 'u'}{8 * ctypes.sizeof(kind)}"


def problems(binding: Any = llama_cpp) -> list[str]:
    """How the installed binding differs from the signatures the worker was written for."""
    found = []
    for name, (result, arguments) in SIGNATURES.items():
        function = getattr(binding, name, None)
        if function is None:
            found.append(f"{name} is missing")
            continue
        actual = (type_code(function.restype),
                  tuple(type_code(t) for t in function.argtypes or ()))
        if actual != (result, arguments):
            expected = _signature(result, arguments)
            found.append(f"{name} is {_signature(*actual)}, expected {expected}")
    for struct, fields in STRUCT_FIELDS.items():
        known = {field[0] for field in getattr(binding, struct)._fields_}
        found.extend(f"{struct} has no field {field}" for field in fields if field not in known)
    return found


def _signature(result: str, arguments: tuple[str, ...]) -> str:
    return f"{result}({', '.join(arguments)})"
