"""The JSON-RPC node's clock: slots and block heights that advance with time, as on a
cluster, so confirmation, blockhash expiry and "node is behind" paths are real.

One block per slot (no skipped slots). A transaction landed in slot `s` is `confirmed` from
slot `s + 1` and `finalized` from slot `s + FINALITY_SLOTS`; a commitment below `processed`
sees the chain that many slots back (its block height and slot lag too). Tests make the clock
faster (`block_s`) or jump it forward (`advance`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLUSTER_BLOCK_S = 0.4  # a cluster's slot time
FINALITY_SLOTS = 32  # a supermajority roots a slot about 32 slots later
SLOTS_PER_EPOCH = 432_000
LAG = {"processed": 0, "confirmed": 1, "finalized": FINALITY_SLOTS}


class SlotClock:
    """Block height (= slot) since the epoch, one every `block_s` seconds, plus what
    `advance` added."""

    def __init__(self, block_s: float = CLUSTER_BLOCK_S,
                 now: Callable[[], float] = time.time) -> None:
        if block_s <= 0:
            raise ValueError("block_s must be positive")
        self.block_s = block_s
        self._now = now
        self._advanced = 0

    def height(self) -> int:
        """The processed block height; the local chain checks blockhash expiry against it."""
        return int(self._now() / self.block_s) + self._advanced

    def at(self, commitment: str | None) -> int:
        """The slot (and block height) as seen at `commitment` (default: finalized)."""
        return self.height() - LAG[commitment or "finalized"]

    def advance(self, blocks: int) -> None:
        """Make `blocks` blocks at once (tests: expire blockhashes without waiting)."""
        self._advanced += blocks

    def status(self, landed: int) -> tuple[str, int | None]:
        """The confirmation status of a transaction that landed in slot `landed`, with its
        confirmations (None once finalized, as a cluster answers)."""
        depth = self.height() - landed
        if depth >= FINALITY_SLOTS:
            return "finalized", None
        return ("confirmed" if depth >= 1 else "processed"), depth

    def visible(self, landed: int, commitment: str | None) -> bool:
        """Whether a transaction landed in slot `landed` is seen at `commitment`."""
        return landed <= self.at(commitment)
