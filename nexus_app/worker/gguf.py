"""A minimal reader for the metadata of GGUF model files (versions 2 and 3, little-endian)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

MetadataValue = str | int | float | bool

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_ARRAY_COUNT = 2**31
MAX_ARRAY_DEPTH = 16

_STRING = 8
_ARRAY = 9
_SCALARS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"),
    1: struct.Struct("<b"),
    2: struct.Struct("<H"),
    3: struct.Struct("<h"),
    4: struct.Struct("<I"),
    5: struct.Struct("<i"),
    6: struct.Struct("<f"),
    7: struct.Struct("<?"),
    10: struct.Struct("<Q"),
    11: struct.Struct("<q"),
    12: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BLOCK_BYTES = 256 * 1024

FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}
"""llama.cpp's `general.file_type` (llama_ftype) -> quantization name."""


class GgufError(ValueError):
    """The file is not a GGUF file this reader understands."""


def read_metadata(path: Path) -> dict[str, MetadataValue]:
    """Return the scalar key-value metadata of a GGUF file; arrays are skipped."""
    with path.open("rb") as stream:
        try:
            return _Reader(stream).metadata()
        except GgufError as exc:
            raise GgufError(f"{path}: {exc}") from None


class _Reader:
    """Sequential decoder over a buffered binary stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._size = os.fstat(stream.fileno()).st_size

    def metadata(self) -> dict[str, MetadataValue]:
        if self._read(4) != GGUF_MAGIC:
            raise GgufError("not a GGUF file (bad magic)")
        version = self._unpack(_U32)
        if version not in SUPPORTED_VERSIONS:
            raise GgufError(f"unsupported GGUF version {version}")
        self._unpack(_U64)  # tensor count
        kv_count = self._unpack(_U64)
        if kv_count > MAX_ARRAY_COUNT:
            raise GgufError(f"absurd metadata count {kv_count}")
        result: dict[str, MetadataValue] = {}
        for _ in range(kv_count):
            key = self._string()
            value_type = self._unpack(_U32)
            if value_type == _ARRAY:
                self._skip_array()
            else:
                result[key] = self._value(value_type)
        return result

    def _read(self, size: int) -> bytes:
        data = self._stream.read(size)
        if len(data) != size:
            raise GgufError("truncated file")
        return data

    def _unpack(self, fmt: struct.Struct) -> int:
        value: int = fmt.unpack(self._read(fmt.size))[0]
        return value

    def _string(self) -> str:
        length = self._unpack(_U64)
        if length > MAX_STRING_BYTES:
            raise GgufError(f"absurd string length {length}")
        return self._read(length).decode("utf-8", errors="replace")

    def _value(self, value_type: int) -> MetadataValue:
        if value_type == _STRING:
            return self._string()
        fmt = _SCALARS.get(value_type)
        if fmt is None:
            raise GgufError(f"unknown value type {value_type}")
        value: MetadataValue = fmt.unpack(self._read(fmt.size))[0]
        return value

    def _skip_array(self, depth: int = 0) -> None:
        if depth > MAX_ARRAY_DEPTH:
            raise GgufError("arrays nested too deeply")
        elem_type = self._unpack(_U32)
        count = self._unpack(_U64)
        if count > MAX_ARRAY_COUNT:
            raise GgufError(f"absurd array length {count}")
        if elem_type == _STRING:
            self._skip_strings(count)
        elif elem_type == _ARRAY:
            for _ in range(count):
                self._skip_array(depth + 1)
        elif elem_type in _SCALARS:
            self._skip(_SCALARS[elem_type].size * count)
        else:
            raise GgufError(f"unknown array element type {elem_type}")

    def _skip_strings(self, count: int) -> None:
        """Walk `count` length-prefixed strings, reading the stream in large blocks."""
        buffer = b""
        pos = 0
        for _ in range(count):
            if pos + 8 > len(buffer):
                if pos > len(buffer):
                    self._skip(pos - len(buffer))
                    buffer, pos = b"", 0
                buffer = buffer[pos:] + self._stream.read(_BLOCK_BYTES)
                pos = 0
                if len(buffer) < 8:
                    raise GgufError("truncated file")
            (length,) = _U64.unpack_from(buffer, pos)
            if length > MAX_STRING_BYTES:
                raise GgufError(f"absurd string length {length}")
            pos += 8 + length
        self._skip(pos - len(buffer))

    def _skip(self, size: int) -> None:
        if self._stream.seek(size, os.SEEK_CUR) > self._size:
            raise GgufError("truncated file")
