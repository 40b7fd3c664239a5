"""Test doubles for faults inside the worker's engine thread, which no real request can
cause any more: a request whose sampler set-up raises a bug, and one that raises what
nothing may swallow (as a pyo3 panic or a C-level abort would)."""

from __future__ import annotations

from typing import Any

from nexus_app.worker.llamacpp import Model
from nexus_app.worker.sampling import Sampling


class FaultySampling(Sampling):
    """A request whose sampler set-up raises an unexpected error."""

    def chain(self, model: Model) -> Any:
        raise RuntimeError("a bug in one request's sampling")


class EngineKiller(BaseException):
    """A fault no handler may swallow."""


class FatalSampling(Sampling):
    """A request whose sampler set-up raises what the engine cannot survive."""

    def chain(self, model: Model) -> Any:
        raise EngineKiller("the engine cannot go on")
