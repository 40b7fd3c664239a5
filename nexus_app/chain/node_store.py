"""What the JSON-RPC node remembers of the transactions it landed, beside the local chain's own
record (which keeps bytes, order and result): the slot on the node's clock, the block time and
the `meta` a cluster serves (fee, balances before and after, token balances, logs).

Transactions the chain processed without the node (a gateway's in-process local chain) have no
entry here: they are served as finalized, with the chain's own slot and a bare `meta`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_app import sqlite
from nexus_app.file_modes import private_file

# `nexus_app.sqlite.migrate` order
MIGRATIONS = ["""
CREATE TABLE landed (
    signature TEXT PRIMARY KEY, slot INTEGER NOT NULL, block_time INTEGER NOT NULL,
    meta TEXT NOT NULL
);
"""]


@dataclass(frozen=True, slots=True)
class Landed:
    slot: int
    block_time: int
    meta: dict[str, Any]


class NodeStore:
    def __init__(self, path: Path) -> None:
        private_file(path)
        self._db = sqlite.connect(path, check_same_thread=False)
        sqlite.migrate(self._db, MIGRATIONS)
        self.transaction_count = self._db.execute("SELECT COUNT(*) FROM landed").fetchone()[0]

    def add(self, signature: str, landed: Landed) -> None:
        self._db.execute("INSERT OR REPLACE INTO landed VALUES (?, ?, ?, ?)", (
            signature, landed.slot, landed.block_time, json.dumps(landed.meta)))
        self.transaction_count += 1

    def get(self, signature: str) -> Landed | None:
        row = self._db.execute(
            "SELECT slot, block_time, meta FROM landed WHERE signature = ?", (signature,)
        ).fetchone()
        return None if row is None else Landed(row[0], row[1], json.loads(row[2]))

    def close(self) -> None:
        self._db.close()
