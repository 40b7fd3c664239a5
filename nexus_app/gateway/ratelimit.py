"""Fixed-window rate limits per key or client address: requests and tokens per minute.

`Limiter` is what the gateway counts through; `RateLimiter` counts in this process (one
replica). With `redis_url` set, `cluster.limits.SharedLimiter` counts on Redis for every
replica, behind the same interface.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

WINDOW_S = 60.0


@dataclass(slots=True)
class _Window:
    start: float
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Quota:
    """The state reported in `X-RateLimit-*` headers."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset_s).encode()),
        ]


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    quota: Quota
    retry_after: int = 0


class Limiter(Protocol):
    async def hit(self, caller: str, rpm: int, tpm: int | None = None) -> Verdict:
        """Count one request if it is within the caller's limits."""
        ...

    async def add_tokens(self, caller: str, tokens: int) -> None: ...

    def sweep(self) -> None:
        """Forget what no longer counts (keeps memory bounded)."""
        ...


class RateLimiter:
    """Counts requests (and optionally tokens) per caller in one-minute windows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _window(self, caller: str) -> tuple[_Window, float]:
        now = self._clock()
        start = now - now % WINDOW_S
        window = self._windows.get(caller)
        if window is None or window.start != start:
            window = self._windows[caller] = _Window(start)
        return window, now

    async def hit(self, caller: str, rpm: int, tpm: int | None = None) -> Verdict:
        return self.hit_now(caller, rpm, tpm)

    def hit_now(self, caller: str, rpm: int, tpm: int | None = None) -> Verdict:
        """Count one request if it is within the caller's limits."""
        window, now = self._window(caller)
        reset = max(1, math.ceil(window.start + WINDOW_S - now))
        over_tokens = tpm is not None and window.tokens >= tpm
        if window.requests >= rpm or over_tokens:
            return Verdict(False, Quota(rpm, 0, reset), retry_after=reset)
        window.requests += 1
        return Verdict(True, Quota(rpm, rpm - window.requests, reset))

    async def add_tokens(self, caller: str, tokens: int) -> None:
        self._window(caller)[0].tokens += tokens

    def sweep(self) -> None:
        """Forget callers whose window has ended (keeps memory bounded)."""
        now = self._clock()
        current = now - now % WINDOW_S
        for caller in [c for c, w in self._windows.items() if w.start != current]:
            del self._windows[caller]


def address_key(address: str) -> str:
    """What per-address limits count by: an IPv4 address (also when IPv4-mapped), or the
    /64 network of an IPv6 one (one host usually holds a whole /64, so single IPv6
    addresses would be free to rotate)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
