"""The JSON-RPC node's fault switch, for tests of the failure paths against a chain that
really executes: latency on every answer, chosen methods answered with a JSON-RPC error,
answers dropped (the node does the work, the answer never comes), transactions accepted and
lost before any block (as a leader may drop them), and transactions that land but whose
status is withheld until their blockhash expires.

A count of None means every call; a number counts calls down, then the fault is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RpcFault:
    """A JSON-RPC error answer, e.g. (-32005, "Node is behind") or (-32603, "Internal error")."""

    code: int
    message: str
    data: Any = None
    calls: int | None = None

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass
class Faults:
    latency_s: float = 0.0
    errors: dict[str, RpcFault] = field(default_factory=dict)
    dropped: dict[str, int | None] = field(default_factory=dict)  # method -> answers to drop
    # transactions landing while this is on: no status, transaction or signature entry is
    # served for them until the block height passes their blockhash's last valid height
    withhold: bool = False
    lose: int = 0  # the next sendTransaction calls: answered with the signature, never landed
    # what happened, for tests to assert on
    calls: list[str] = field(default_factory=list)
    answered_errors: list[str] = field(default_factory=list)
    dropped_answers: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # signatures accepted and never landed

    def clear(self) -> None:
        """No more faults (what happened stays recorded)."""
        self.latency_s, self.withhold, self.lose = 0.0, False, 0
        self.errors.clear()
        self.dropped.clear()

    def error_for(self, method: str) -> dict[str, Any] | None:
        """The error to answer this call of `method` with, if one is set (counted down)."""
        fault = self.errors.get(method)
        if fault is None:
            return None
        if fault.calls is not None:
            fault.calls -= 1
            if fault.calls <= 0:
                del self.errors[method]
        self.answered_errors.append(method)
        return fault.error()

    def loses(self, signature: str) -> bool:
        """Whether the transaction sent now is lost instead of landing (counted down)."""
        if self.lose <= 0:
            return False
        self.lose -= 1
        self.lost.append(signature)
        return True

    def drops(self, method: str) -> bool:
        """Whether the answer to this call of `method` is dropped (counted down)."""
        if method not in self.dropped:
            return False
        left = self.dropped[method]
        if left is not None:
            if left <= 1:
                del self.dropped[method]
            else:
                self.dropped[method] = left - 1
        self.dropped_answers.append(method)
        return True

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the faults with `spec`, the JSON form of this switch: {"latency_s": 0.2,
        "errors": {"getSignatureStatuses": {"code": -32005, "message": "Node is behind",
        "calls": 3}}, "dropped": {"sendTransaction": 1}, "withhold": true, "lose": 1} (all
        optional)."""
        errors = {method: RpcFault(int(fault["code"]), str(fault["message"]), fault.get("data"),
                                   fault.get("calls"))
                  for method, fault in dict(spec.get("errors") or {}).items()}
        dropped = {str(method): None if calls is None else int(calls)
                   for method, calls in dict(spec.get("dropped") or {}).items()}
        self.clear()
        self.latency_s = float(spec.get("latency_s") or 0.0)
        self.withhold = bool(spec.get("withhold"))
        self.lose = int(spec.get("lose") or 0)
        self.errors.update(errors)
        self.dropped.update(dropped)

    def record(self) -> dict[str, Any]:
        """What happened so far, in JSON."""
        return {"calls": self.calls, "answered_errors": self.answered_errors,
                "dropped_answers": self.dropped_answers, "lost": self.lost}
