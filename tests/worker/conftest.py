"""The bundled SmolLM2 model, loaded once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nexus_app.worker.llamacpp import Model
from nexus_app.worker.models import bundled_model_path


@pytest.fixture(scope="module")
def model() -> Iterator[Model]:
    path = bundled_model_path()
    assert path is not None
    loaded = Model(path, gpu_layers=-1)
    yield loaded
    loaded.close()
