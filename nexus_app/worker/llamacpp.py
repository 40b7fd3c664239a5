"""Typed wrappers over llama-cpp-python's low-level C API: a model, a context, a token batch.

Only the engine thread touches a context; a model's vocabulary is read-only and may be used
from any thread (tokenizing prompts off the engine thread).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
from pathlib import Path

import llama_cpp
import numpy as np
import numpy.typing as npt

from nexus_app.config import FlashAttention
from nexus_app.worker import c_api

log = logging.getLogger("nexus_app.llama")
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONTINUE = 5
_last_level = logging.DEBUG


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator,misc]
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    """llama.cpp's own log goes to Python logging: its info lines at debug level."""
    global _last_level
    if level != _GGML_CONTINUE:
        _last_level = _GGML_LEVELS.get(level, logging.DEBUG)
    message = text.decode("utf-8", "replace").rstrip()
    if message:
        log.log(_last_level, "%s", message)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()


class LlamaError(RuntimeError):
    """llama.cpp refused to load a model, create a context or decode a batch."""


class LlamaFatal(LlamaError):
    """llama.cpp reported an error its context cannot recover from."""


@functools.cache
def binding_problems() -> tuple[str, ...]:
    """How the installed llama-cpp-python differs from the C API this module calls."""
    return tuple(c_api.problems())


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this is an x86 CPU with AMX tiles. llama.cpp's AMX matrix kernels (one of its
    "extra" CPU buffer types) die with SIGILL where a hypervisor lists AMX but does not
    enable its tile state, so the worker does not use extra buffer types on such CPUs."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and " amx_tile" in line for line in info)
    except OSError:
        return False


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


class Model:
    """A loaded GGUF model and its vocabulary."""

    def __init__(self, path: Path, gpu_layers: int) -> None:
        if binding_problems():
            raise LlamaError(
                f"llama-cpp-python {llama_cpp.__version__} does not match the C API this worker "
                f"was checked against ({', '.join(c_api.TESTED_VERSIONS)}): "
                + "; ".join(binding_problems()))
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0 if not gpu_offload_supported() else (
            2**31 - 1 if gpu_layers < 0 else gpu_layers
        )
        self.gpu_layers = params.n_gpu_layers
        params.use_extra_bufts = not cpu_has_amx()
        pointer = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not pointer:
            raise LlamaError(f"llama.cpp could not load {path}")
        self.pointer = pointer
        self.name = path.name
        self.vocab = llama_cpp.llama_model_get_vocab(pointer)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama_cpp.llama_model_n_embd(pointer)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(pointer)
        self.n_params = llama_cpp.llama_model_n_params(pointer)

    def close(self) -> None:
        if self.pointer:
            llama_cpp.llama_model_free(self.pointer)
            self.pointer = None

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), buffer, capacity, add_special, parse_special
        )
        if count < 0:  # cannot happen with one slot per byte, but the API allows it
            raise LlamaError("tokenizer output larger than expected")
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        """The bytes of one token as text (special tokens render as nothing)."""
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def token_text(self, token: int) -> str:
        """A token's text as the vocabulary spells it (for BOS/EOS in chat templates)."""
        if token < 0:
            return ""
        return bytes(llama_cpp.llama_vocab_get_text(self.vocab, token)).decode("utf-8", "replace")

    @property
    def bos_text(self) -> str:
        return self.token_text(llama_cpp.llama_vocab_bos(self.vocab))

    @property
    def eos_text(self) -> str:
        return self.token_text(llama_cpp.llama_vocab_eos(self.vocab))

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))


def flash_attention_type(setting: FlashAttention, model: Model) -> int:
    """llama.cpp's flash-attention choice for a setting. "auto" turns it off for a model on the
    CPU: there llama.cpp's flash-attention kernel makes attention over a long context several
    times slower than its matrix products (SmolLM2 on 2 threads of an AVX-512 Xeon: 22 prompt
    tokens after 800 cached took 445-525 ms with it, 124-171 ms without; a token at 822,
    26-31 ms against 15-18). It saves memory: without it the compute buffer holds a layer's
    attention scores (context per slot x n_ubatch x heads floats). On a GPU llama.cpp
    chooses."""
    if setting == "on":
        return llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
    if setting == "off" or not model.gpu_layers:
        return llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    return llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO


class Context:
    """A llama.cpp context: the KV cache of up to `n_seq` sequences sharing `n_ctx` cells."""

    def __init__(self, model: Model, *, n_ctx: int, n_seq: int, threads: int,
                 n_batch: int = 512, embeddings: bool = False,
                 flash_attention: FlashAttention = "auto") -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        # a KV cache of its own for each sequence, as the llama.cpp server's with -np: in one
        # shared cache, each token's attention also steps over every cell the other
        # sequences hold (a slot's kept conversation too); with three idle slots holding
        # ~1,000 tokens each, one stream decoded 94-102 tokens/s shared, 102-122 separate
        # (the engine alone, 2 threads). Separate caches need the batch in sequence order
        # (`engine.fill_batch`).
        params.kv_unified = False
        params.flash_attn_type = flash_attention_type(flash_attention, model)
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        params.embeddings = embeddings
        if embeddings:
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        pointer = llama_cpp.llama_init_from_model(model.pointer, params)
        if not pointer:
            raise LlamaError("llama.cpp could not create a context (out of memory?)")
        self.pointer = pointer
        self.n_ctx = llama_cpp.llama_n_ctx(pointer)
        self.n_batch = n_batch
        self.memory = llama_cpp.llama_get_memory(pointer)

    def close(self) -> None:
        if self.pointer:
            llama_cpp.llama_free(self.pointer)
            self.pointer = None

    def decode(self, batch: Batch) -> None:
        """Decode a batch. 1 (no room in the KV cache), 2 (aborted) and -1 (invalid batch)
        fail the batch; below -1 llama.cpp's context cannot go on."""
        status = llama_cpp.llama_decode(self.pointer, batch.raw)
        if status < -1:
            raise LlamaFatal(f"llama_decode failed with status {status}")
        if status != 0:
            raise LlamaError(f"llama_decode failed with status {status}")

    def logits(self, index: int, n_vocab: int) -> npt.NDArray[np.float32]:
        """The logits of batch position `index` after the last decode (a view, copy to keep)."""
        pointer = llama_cpp.llama_get_logits_ith(self.pointer, index)
        if not pointer:
            raise LlamaError(f"no logits at batch index {index}")
        return np.ctypeslib.as_array(pointer, shape=(n_vocab,))

    def forget(self, seq_id: int) -> None:
        """Drop a sequence's cells from the KV cache."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, -1, -1)

    def keep_prefix(self, seq_id: int, length: int) -> bool:
        """Drop sequence `seq_id`'s cache from position `length` on; False (the sequence
        then cleared) when the model's cache cannot be cut there."""
        if llama_cpp.llama_memory_seq_rm(self.memory, seq_id, length, -1):
            return True
        self.forget(seq_id)
        return False

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def embedding(self, seq_id: int, size: int) -> list[float]:
        """The pooled embedding of a sequence, L2-normalised."""
        values = llama_cpp.llama_get_embeddings_seq(self.pointer, seq_id)
        if not values:
            raise LlamaError("the model returned no embedding")
        vector = [float(values[i]) for i in range(size)]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class Batch:
    """A reusable token batch; each token belongs to one sequence."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.size = 0

    def close(self) -> None:
        if self.capacity:
            llama_cpp.llama_batch_free(self.raw)
            self.capacity = 0

    def clear(self) -> None:
        self.size = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append a token; returns its index (where its logits are read after decoding)."""
        index = self.size
        raw = self.raw
        raw.token[index] = token
        raw.pos[index] = pos
        raw.n_seq_id[index] = 1
        raw.seq_id[index][0] = seq_id
        raw.logits[index] = logits
        self.size = raw.n_tokens = index + 1
        return index

    @property
    def free(self) -> int:
        return self.capacity - self.size
