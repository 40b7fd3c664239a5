"""Admission of worker connections: how many one client address may hold (pending a hello,
and in all) and how many frames a connection may send per second. Framework-free, so the
socket endpoint (`api/worker_socket.py`) stays the only part that knows about WebSockets."""

from __future__ import annotations

import time
from collections import Counter

from nexus_app.gateway.ratelimit import address_key

HANDSHAKES_PER_ADDRESS = 16  # worker connections one address may have waiting for a hello


class HandshakeGate:
    """Bounds the worker connections of one client address (IPv6: of one /64 network, which
    one host usually holds whole): all of them, since each costs memory for as long as it
    stays, and those that have not said hello yet, since each holds a task for up to
    HELLO_TIMEOUT_S and a flood of them must not pile up."""

    def __init__(self, per_address: int, connections_per_address: int | None = None) -> None:
        self.per_address = per_address
        self.connections_per_address = connections_per_address
        self._pending: Counter[str] = Counter()
        self._open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Count a new connection's handshake, unless the address has too many pending."""
        key = address_key(address)
        if self._pending[key] >= self.per_address:
            return False
        self._pending[key] += 1
        return True

    def leave(self, address: str) -> None:
        """The handshake admitted for `address` ended (hello or not)."""
        _decrement(self._pending, address_key(address))

    def connect(self, address: str) -> bool:
        """Count a connection from `address` until `disconnect`, unless it has the most."""
        key = address_key(address)
        limit = self.connections_per_address
        if limit is not None and self._open[key] >= limit:
            return False
        self._open[key] += 1
        return True

    def disconnect(self, address: str) -> None:
        _decrement(self._open, address_key(address))


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


class FrameRate:
    """A token bucket: the frames one worker connection may send per second, with a
    second's worth as burst. Parsing frames costs the gateway CPU whoever sends them."""

    __slots__ = ("_last", "_tokens", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._tokens = float(rate)
        self._last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
