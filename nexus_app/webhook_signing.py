"""Signing and verifying NEXUS webhook deliveries.

Each delivery carries `X-Nexus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`, the HMAC
keyed with the webhook's secret over `<t>.<raw body>`. Receivers verify it with `verify`
(standard library only, so it can be copied into any project).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Nexus-Signature"
DEFAULT_TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The delivery was not signed with this secret, or is too old to accept."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Nexus-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> None:
    """Raise `InvalidSignature` unless `header` signs `body` with `secret` within
    `tolerance_s` seconds of now (which refuses replays of old deliveries)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        raise InvalidSignature("no timestamp in the signature header") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidSignature("the signature's timestamp is outside the tolerance")
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, fields.get("v1", "")):
        raise InvalidSignature("the signature does not match")
