"""Sampling parameters of a job, validated, and the llama.cpp sampler chain built from them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from nexus_app.protocol import MAX_TOP_LOGPROBS
from nexus_app.worker.llamacpp import Model

DEFAULT_TOP_K = 40  # what llama.cpp and llama-cpp-python use; also keeps sampling cheap
PENALTY_WINDOW = 64  # last tokens the frequency/presence penalties look at
MAX_STOPS = 4


class RequestError(ValueError):
    """A job request the worker cannot serve as given (reported to the gateway as such)."""


def _number(request: dict[str, Any], name: str, default: float, low: float, high: float
            ) -> float:
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"'{name}' must be a number from {low} to {high}")
    return float(value)


@dataclass(frozen=True)
class Sampling:
    """How to pick each next token, and when to stop."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = DEFAULT_TOP_K
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; n: each token's and its n likeliest alternatives'
    grammar: str | None = field(default=None, repr=False)

    @classmethod
    def from_request(cls, request: dict[str, Any], grammar: str | None = None) -> Sampling:
        max_tokens = request.get("max_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError("'max_tokens' must be a positive integer")
        stop = request.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        if (not isinstance(stop, list) or len(stop) > MAX_STOPS
                or not all(isinstance(s, str) and s for s in stop)):
            raise RequestError(f"'stop' must be a string or up to {MAX_STOPS} non-empty strings")
        seed = request.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError("'seed' must be an integer")
        logprobs = request.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)
                                     or not 0 <= logprobs <= MAX_TOP_LOGPROBS):
            raise RequestError(f"'logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}")
        return cls(
            max_tokens=max_tokens,
            temperature=_number(request, "temperature", 1.0, 0.0, 2.0),
            top_p=_number(request, "top_p", 1.0, 0.0, 1.0),
            top_k=int(_number(request, "top_k", DEFAULT_TOP_K, 0, 1_000_000)),
            frequency_penalty=_number(request, "frequency_penalty", 0.0, -2.0, 2.0),
            presence_penalty=_number(request, "presence_penalty", 0.0, -2.0, 2.0),
            seed=seed,
            stop=tuple(stop),
            logprobs=logprobs,
            grammar=grammar,
        )

    def chain(self, model: Model) -> Any:
        """A new llama.cpp sampler chain (the caller frees it with `free_chain`)."""
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

        def add(sampler: Any) -> None:
            if not sampler:
                raise RequestError("the sampler could not be created (invalid grammar?)")
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        try:
            if self.grammar is not None:
                add(llama_cpp.llama_sampler_init_grammar(
                    model.vocab, self.grammar.encode(), b"root"))
            if self.frequency_penalty or self.presence_penalty:
                add(llama_cpp.llama_sampler_init_penalties(
                    model.n_vocab, PENALTY_WINDOW, 1.0, self.frequency_penalty,
                    self.presence_penalty))
            if self.temperature == 0:
                add(llama_cpp.llama_sampler_init_greedy())
                return chain
            if self.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(self.top_k))
            if self.top_p < 1:
                add(llama_cpp.llama_sampler_init_top_p(self.top_p, 1))
            add(llama_cpp.llama_sampler_init_temp(self.temperature))
            seed = self.seed if self.seed is not None else random.getrandbits(32)
            add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        except BaseException:
            free_chain(chain)
            raise
        return chain


def free_chain(chain: Any) -> None:
    llama_cpp.llama_sampler_free(chain)
