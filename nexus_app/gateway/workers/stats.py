"""Rolling per-second counters for the network view (jobs/min, tokens/s)."""

from __future__ import annotations

import time


class RollingCounter:
    """Sum of values added over the last `window_s` seconds, in one-second buckets."""

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self._buckets = [0] * window_s
        self._stamps = [-1] * window_s

    def add(self, value: int, now: float | None = None) -> None:
        second = int(time.time() if now is None else now)
        slot = second % self.window_s
        if self._stamps[slot] != second:
            self._stamps[slot], self._buckets[slot] = second, 0
        self._buckets[slot] += value

    def total(self, now: float | None = None) -> int:
        second = int(time.time() if now is None else now)
        oldest = second - self.window_s
        return sum(b for b, s in zip(self._buckets, self._stamps, strict=True) if s > oldest)
