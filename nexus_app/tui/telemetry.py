"""What the worker dashboard plots, kept apart from the widgets so it is plain data: an hour of
samples (tokens/s and the first GPU's utilisation, VRAM, temperature and power), earnings by
hour and by day, and what the machine earns at its current rate."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from nexus_app.contracts import EarningsHistory, EarningsHour
from nexus_app.units import format_units

WINDOW_S = 3600.0  # the plots show the last hour
HOUR_S = 3600
SERIES = {  # field -> (title, unit) of its plot
    "tokens_per_s": ("Tokens/s", "tok/s"),
    "gpu_util": ("GPU utilisation", "%"),
    "vram_used_mb": ("VRAM used", "MiB"),
    "temperature_c": ("Temperature", "°C"),
    "power_w": ("Power", "W"),
}


@dataclass(frozen=True)
class Sample:
    """One reading; None where the machine cannot tell (no GPU, a sensor NVML lacks)."""

    at: float
    tokens_per_s: float | None = None
    gpu_util: float | None = None
    vram_used_mb: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


class Telemetry:
    """The samples of the last hour, oldest first."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        while self.samples and self.samples[0].at < sample.at - self.window_s:
            self.samples.popleft()

    def series(self, field: str, now: float | None = None,
               points: int | None = None) -> tuple[list[float], list[float]]:
        """(minutes before `now`, as negative numbers; values) of the samples that have
        `field`; with `points`, averaged into at most that many equal spans of the window
        (a plot a few dozen cells wide need not draw an hour of samples one by one)."""
        now = time.time() if now is None else now
        xs: list[float] = []
        ys: list[float] = []
        for sample in self.samples:
            value = getattr(sample, field)
            if value is not None:
                xs.append(round((sample.at - now) / 60, 2))
                ys.append(float(value))
        if points is None or len(xs) <= points:
            return xs, ys
        span = self.window_s / 60 / points
        sums: dict[int, list[float]] = {}
        for x, y in zip(xs, ys, strict=True):
            bucket = sums.setdefault(min(int((x + self.window_s / 60) / span), points - 1),
                                     [0.0, 0.0, 0.0])
            bucket[0] += x
            bucket[1] += y
            bucket[2] += 1
        ordered = [sums[key] for key in sorted(sums)]
        return ([round(b[0] / b[2], 2) for b in ordered], [b[1] / b[2] for b in ordered])

    def latest(self, field: str) -> float | None:
        for sample in reversed(self.samples):
            value = getattr(sample, field)
            if value is not None:
                return float(value)
        return None


def by_day(hours: Sequence[EarningsHour], utc_offset_s: int = 0) -> list[tuple[str, int]]:
    """Earnings summed by calendar day (the day of `utc_offset_s`, local time by default
    in the app), oldest first, as ('YYYY-MM-DD', amount)."""
    days: dict[str, int] = {}
    for hour in hours:
        day = time.strftime("%Y-%m-%d", time.gmtime(hour.hour + utc_offset_s))
        days[day] = days.get(day, 0) + hour.earned
    return sorted(days.items())


def hourly_rate(hours: Sequence[EarningsHour], now: float) -> int:
    """Base units earned per hour at the current rate: the current hour and the one before,
    over the time they span up to `now` (0 with no earnings in them)."""
    start = (int(now) // HOUR_S - 1) * HOUR_S
    recent = sum(h.earned for h in hours if h.hour >= start)
    return int(recent * HOUR_S / (now - start))


def local_utc_offset(now: float) -> int:
    """This machine's offset from UTC at `now`, in seconds."""
    return time.localtime(now).tm_gmtoff


def earnings_summary(history: EarningsHistory | None, jobs_by_model: dict[str, int],
                     now: float) -> str:
    """Today's and yesterday's earnings (local days), the current rate per hour and per day,
    and the jobs this machine served per model in this session."""
    lines = []
    if history is not None:
        offset = local_utc_offset(now)
        days = dict(by_day(history.data, offset))
        today = time.strftime("%Y-%m-%d", time.gmtime(now + offset))
        yesterday = time.strftime("%Y-%m-%d", time.gmtime(now + offset - 86400))
        rate = hourly_rate(history.data, now)
        decimals = history.decimals
        lines += [f"Today      {format_units(days.get(today, 0), decimals)} NEXUS",
                  f"Yesterday  {format_units(days.get(yesterday, 0), decimals)} NEXUS",
                  f"Rate now   {format_units(rate, decimals)} NEXUS/h",
                  f"Per day    {format_units(rate * 24, decimals)} NEXUS"]
    else:
        lines.append("Earnings   loading…")
    lines.append("Jobs by model" if jobs_by_model else "Jobs       none served yet")
    lines += [f"  {model}  {count}" for model, count in sorted(jobs_by_model.items())]
    return "\n".join(lines)
