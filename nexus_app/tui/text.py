"""Pure text helpers shared by screens (no widgets), so a screen never imports a sibling."""

from __future__ import annotations

import time


def when(timestamp: int | None) -> str:
    """A Unix time as local `YYYY-MM-DD HH:MM`, or a dash when there is none."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "—"
