"""Identifiers that must be unique but need not be secret: a random prefix drawn once per
process, then a counter (far cheaper than drawing random bytes for each)."""

from __future__ import annotations

import itertools
import secrets

_PREFIX = secrets.token_hex(6)
_counter = itertools.count(1)


def new_id(kind: str) -> str:
    return f"{kind}_{_PREFIX}{next(_counter):x}"
