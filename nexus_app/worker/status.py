"""The worker node's status: a leaf (no llama.cpp, no network) so the terminal app can type
its messages and screens with it without loading the inference engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NodeState = Literal["starting", "connecting", "online", "draining", "stopped"]


@dataclass(frozen=True)
class NodeStatus:
    """What the node is doing, for logs and the TUI."""

    state: NodeState = "starting"
    gateway_url: str = ""
    worker_id: str | None = None
    accelerator: str = "cpu"
    jobs_active: int = 0
    jobs_served: int = 0
    tokens_generated: int = 0
    tokens_per_s: float = 0.0
    earned: int = 0
    paid: int = 0
    last_error: str = ""
