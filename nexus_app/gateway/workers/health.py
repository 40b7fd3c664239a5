"""Benching worker wallets whose jobs keep failing: after a run of failed jobs a wallet is
cooled down (no jobs for a while); after several cooldowns with no job served in between it
is paused (no jobs for much longer). A job served clears its record. Records are per payout
wallet, so reconnecting does not clear them; they live in memory and a restart forgets them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

COOLING_DOWN, PAUSED = "cooling down", "paused"
MAX_RECORDS = 10_000  # beyond this, records of wallets not benched now are forgotten


@dataclass
class _Record:
    failures: int = 0  # failed jobs in a row
    cooldowns: int = 0  # cooldowns since the last job served
    benched_until: float = 0.0
    state: str | None = None


class WorkerHealth:
    def __init__(self, *, failures_before_cooldown: int, cooldown_s: float,
                 cooldowns_before_pause: int, pause_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_before_cooldown = failures_before_cooldown
        self.cooldown_s = cooldown_s
        self.cooldowns_before_pause = cooldowns_before_pause
        self.pause_s = pause_s
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def state(self, wallet: str) -> str | None:
        """`cooling down`, `paused`, or None when the wallet may take jobs."""
        record = self._records.get(wallet)
        if record is None or self._clock() >= record.benched_until:
            return None
        return record.state

    def available(self, wallet: str) -> bool:
        return self.state(wallet) is None

    def benched_for(self, wallet: str) -> float:
        """Seconds until the wallet may take jobs again (0 when it may now)."""
        record = self._records.get(wallet)
        return max(0.0, record.benched_until - self._clock()) if record else 0.0

    def succeeded(self, wallet: str) -> None:
        self._records.pop(wallet, None)

    def failed(self, wallet: str) -> float | None:
        """Count a failed job; returns the seconds the wallet is now benched for, if it is."""
        record = self._record(wallet)
        record.failures += 1
        if record.failures < self.failures_before_cooldown:
            return None
        seconds = self._bench(record)
        log.warning("worker wallet %s %s for %.0f s after %d failed jobs in a row", wallet,
                    record.state, seconds, self.failures_before_cooldown)
        return seconds

    def misbehaved(self, wallet: str) -> float:
        """Bench the wallet at once (a cooldown, or a pause after enough of them): its worker
        broke a limit of the protocol or sent a result that failed validation. Returns the
        seconds it is benched for."""
        record = self._record(wallet)
        seconds = self._bench(record)
        log.warning("worker wallet %s %s for %.0f s: it broke the protocol's limits", wallet,
                    record.state, seconds)
        return seconds

    def _bench(self, record: _Record) -> float:
        record.failures = 0
        record.cooldowns += 1
        if record.cooldowns >= self.cooldowns_before_pause:
            record.cooldowns = 0
            record.state, seconds = PAUSED, self.pause_s
        else:
            record.state, seconds = COOLING_DOWN, self.cooldown_s
        record.benched_until = self._clock() + seconds
        return seconds

    def _record(self, wallet: str) -> _Record:
        if wallet not in self._records and len(self._records) >= MAX_RECORDS:
            self._forget_unbenched()
        return self._records.setdefault(wallet, _Record())

    def _forget_unbenched(self) -> None:
        """Keep memory bounded (keypairs cost nothing, so wallets are unlimited): drop the
        failure counts of wallets that are not benched now."""
        now = self._clock()
        kept = [(wallet, record) for wallet, record in self._records.items()
                if record.benched_until > now]
        # benched wallets too are past the limit: the oldest records go (a wallet benched
        # long ago may take jobs again early, rather than memory growing with keypairs)
        self._records = dict(kept[-(MAX_RECORDS // 2):] if len(kept) >= MAX_RECORDS else kept)
