"""Which settings are JSON in the environment (`NEXUS_PRICES='{"m": {...}}'`), decided from
the field's type, so that a new list, table or model setting is read right without a list of
type names to keep in step (a leaf: config.py imports it)."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel


def is_json_type(annotation: Any) -> bool:
    """A list, a table or a model, alone or in a union such as `list[str] | None`."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(is_json_type(arg) for arg in get_args(annotation))
    if get_origin(annotation) in (list, dict, tuple, set, frozenset):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
