"""The engine's slots: its KV-cache sequences, and the tokens each free one still holds.

A finished generation leaves its tokens (prompt and reply) in its sequence's cache. The next
request takes the free slot whose cached tokens share the longest prefix with its prompt and
feeds only the rest — the next turn of a chat re-reads nothing it sent before, as the
llama.cpp server's `cache_prompt` does. When that slot would keep less than `min_similarity`
of its cache (the two share only a system prompt, say), the request takes the least recently
used slot instead, so an unrelated request does not evict the cache a conversation is about
to need; unless the slot holds the whole prompt: a prompt sent again (a regenerated reply, the
same question from many clients) finds its slot however long the reply after it.
"""

from __future__ import annotations

from dataclasses import dataclass


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share (a binary search over slices compared in C:
    4x faster than a Python loop at ~900 tokens, run for every free slot at each admission)."""
    same, differs = 0, min(len(a), len(b))  # a[:same] == b[:same]; no match past `differs`
    while same < differs:
        middle = (same + differs + 1) // 2
        if a[same:middle] == b[same:middle]:
            same = middle
        else:
            differs = middle - 1
    return same


@dataclass
class _Slot:
    cached: list[int]  # the tokens in this sequence's KV cache, from position 0
    last_used: int = 0


class Slots:
    """Free slots by sequence id, with what each holds; the engine thread alone uses it."""

    def __init__(self, count: int, min_similarity: float) -> None:
        self.min_similarity = min_similarity
        self._free = {seq_id: _Slot([]) for seq_id in range(count)}
        self._clock = 0

    def __len__(self) -> int:
        return len(self._free)

    def take(self, prompt: list[int]) -> tuple[int, int]:
        """A free slot for `prompt` and how many of its leading tokens that slot's cache
        already holds (always fewer than the whole prompt: the last token is fed again so the
        model gives logits for it)."""
        shared = {seq_id: common_prefix(slot.cached, prompt) for seq_id, slot in self._free.items()}
        seq_id = max(self._free, key=lambda s: (shared[s], -self._free[s].last_used))
        holds_the_prompt = shared[seq_id] == len(prompt)
        if (not holds_the_prompt
                and shared[seq_id] < self.min_similarity * len(self._free[seq_id].cached)):
            seq_id = min(self._free, key=lambda s: self._free[s].last_used)
        del self._free[seq_id]
        return seq_id, min(shared[seq_id], len(prompt) - 1)

    def give_back(self, seq_id: int, cached: list[int]) -> None:
        """Free `seq_id`, whose cache now holds `cached` (empty if it was cleared)."""
        self._clock += 1
        self._free[seq_id] = _Slot(cached, self._clock)
