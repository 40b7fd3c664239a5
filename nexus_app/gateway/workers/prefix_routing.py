"""Prefix-aware routing: send a conversation's next turn to the worker that still holds its
earlier turns in its KV cache.

A job's prompt is cut into blocks (a chat's messages; a text prompt's runs of
`TEXT_BLOCK_CHARS` characters) and each block's hash is chained to the ones before it, so the
k-th hash stands for the whole prefix up to block k. The index remembers, for the most recent
`capacity` prefix hashes, the worker that was last given a prompt starting with that prefix.
A worker's match for a new job is the deepest of the job's prefixes it was last given.

Only hashes are kept — keyed with a random salt made at start, in memory, never written — so
the index reveals no prompt text, and its size does not grow with the number of workers.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Any

import orjson

TEXT_BLOCK_CHARS = 256  # a text prompt's block: about 64 tokens
MAX_BLOCKS = 256  # blocks hashed per prompt; a longer prompt's tail adds nothing to the match


def prefix_hashes(salt: bytes, model: str, request: dict[str, Any]) -> list[bytes]:
    """The chained hashes of a job's prompt blocks, shortest prefix first."""
    messages = request.get("messages")
    if isinstance(messages, list):
        blocks = [orjson.dumps(message) for message in messages[:MAX_BLOCKS]]
    else:
        text = str(request.get("prompt", ""))
        blocks = [text[i:i + TEXT_BLOCK_CHARS].encode()
                  for i in range(0, min(len(text), TEXT_BLOCK_CHARS * MAX_BLOCKS),
                                 TEXT_BLOCK_CHARS)]
    chained, previous = [], model.encode()
    for block in blocks:
        previous = hashlib.blake2b(previous + block, digest_size=16, key=salt).digest()
        chained.append(previous)
    return chained


class PrefixIndex:
    """The worker last given each recent prompt prefix (by salted hash), least recently
    given first out."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.salt = os.urandom(16)
        self._owner: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owner)

    def hashes(self, model: str, request: dict[str, Any]) -> list[bytes]:
        return prefix_hashes(self.salt, model, request)

    def matches(self, hashes: list[bytes]) -> dict[str, int]:
        """For each worker that was given some of these prefixes, the deepest one (in
        blocks)."""
        depth: dict[str, int] = {}
        for blocks, key in enumerate(hashes, start=1):
            owner = self._owner.get(key)
            if owner is not None:
                depth[owner] = blocks
        return depth

    def given(self, worker_id: str, hashes: list[bytes]) -> None:
        """`worker_id` was given a prompt with these prefixes: it holds them in its cache."""
        for key in hashes:
            self._owner[key] = worker_id
            self._owner.move_to_end(key)
        while len(self._owner) > self.capacity:
            self._owner.popitem(last=False)
