"""The worker dashboard's plots (plotext in Textual): a series over the last hour, and
earnings per hour as bars. Imported with the worker screen only, not before the first
frame."""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot

from nexus_app.contracts import EarningsHour

HOUR_S = 3600


class SeriesPlot(PlotextPlot):
    """One quantity over the last hour: x in minutes before now, its latest value in the
    title."""

    def __init__(self, title: str, unit: str, *, id: str) -> None:
        super().__init__(id=id, classes="plot")
        self.label, self.unit = title, unit
        self.show([], [])

    def show(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        now = f" · {ys[-1]:.0f} {self.unit}" if ys else " · no data"
        plt.title(f"{self.label}{now}")
        plt.xlim(-60, 0)
        plt.xticks([-60, -45, -30, -15, 0])
        plt.xlabel("minutes ago")
        if ys:
            plt.plot(list(xs), list(ys), marker="braille")
            top = max(ys)
            plt.ylim(0, top * 1.1 if top > 0 else 1)
        else:
            plt.ylim(0, 1)
        self.refresh()


class EarningsPlot(PlotextPlot):
    """Earnings per hour over the last `hours` hours, in NEXUS, as bars."""

    def __init__(self, hours: int = 24, *, id: str) -> None:
        super().__init__(id=id, classes="plot")
        self.hours = hours
        self.show([], 0, 6)

    def show(self, earned: Sequence[EarningsHour], now: float, decimals: int) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        current = int(now) // HOUR_S
        amounts = [0.0] * self.hours
        for hour in earned:
            ago = current - hour.hour // HOUR_S
            if 0 <= ago < self.hours:
                amounts[self.hours - 1 - ago] += hour.earned / 10**decimals
        plt.title(f"NEXUS per hour, last {self.hours} h")
        plt.xlabel("hours ago")
        plt.bar([ago - self.hours + 1 for ago in range(self.hours)], amounts, width=0.6)
        plt.xticks([-step for step in range(0, self.hours, 6)])
        plt.ylim(0, max(amounts) * 1.1 if any(amounts) else 1)
        self.refresh()
