"""The local chain: an in-process `LiteSVM` executing the real SPL Token, Associated Token
Account and Memo programs, persisted to one SQLite file so balances and history survive
restarts.

LiteSVM keeps state in memory only, so every processed transaction is written down (its
bytes, result and the accounts it touched) and replayed into a fresh LiteSVM as account
state on start. Blocks are counted by the clock, one every `BLOCK_S` seconds, so block heights
keep growing across restarts. Blockhashes are random and valid for
`BLOCKHASH_LIFETIME_BLOCKS` blocks (`BLOCKHASH_LIFETIME_S`), like a real cluster's, and are
forgotten on restart, so a transaction signed before a restart cannot be replayed after it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO

from solders.account import Account
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import (
    FailedTransactionMetadata,
    SimulatedTransactionInfo,
    TransactionMetadata,
)

from nexus_app import sqlite
from nexus_app.chain.backend import (
    BLOCKHASH_LIFETIME_BLOCKS,
    BLOCKHASH_LIFETIME_S,
    ChainError,
    ChainTransaction,
    RecentBlockhash,
    TransactionFailed,
)
from nexus_app.chain.token import token_account_amount
from nexus_app.file_modes import private_file

MAX_BLOCKHASHES = 10_000
BLOCK_S = BLOCKHASH_LIFETIME_S / BLOCKHASH_LIFETIME_BLOCKS  # 0.8 s a block

# `nexus_app.sqlite.migrate` order. The first one is the schema of chains made before versioning
# (user_version 0), hence IF NOT EXISTS: such a chain takes it as a no-op and is then at 1.
MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS accounts (address BLOB PRIMARY KEY, account BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    signature TEXT PRIMARY KEY, slot INTEGER NOT NULL, tx BLOB NOT NULL, error TEXT
);
CREATE TABLE IF NOT EXISTS mentions (
    address TEXT NOT NULL, slot INTEGER NOT NULL, signature TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mentions_address ON mentions (address, slot);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""]


class LocalChain:
    """`Chain` on an in-process LiteSVM. Calls never await, so each runs atomically on the
    event loop (they take well under a millisecond)."""

    name = "local"

    def __init__(self, path: Path, *, exclusive: bool = True,
                 clock: Callable[[], int] | None = None) -> None:
        """`clock` gives the block height (default: one block every `BLOCK_S` since the
        epoch); the JSON-RPC node (`node_server.py`) passes its own, which tests can advance."""
        private_file(path)  # its keys' balances and history are the operator's: 0600
        self._lock = _lock(path) if exclusive else None
        self._clock = clock or _clock_height
        self._db = sqlite.connect(path, check_same_thread=False)
        sqlite.migrate(self._db, MIGRATIONS)
        self._svm = LiteSVM().with_blockhash_check(False)
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict()  # -> last valid height
        for address, account in self._db.execute("SELECT address, account FROM accounts"):
            self._svm.set_account(Pubkey.from_bytes(address), Account.from_bytes(account))
        self._slot = self._db.execute(
            "SELECT COALESCE(MAX(slot), 0) FROM transactions"
        ).fetchone()[0]

    # metadata kept with the chain (the $NEXUS mint's address) -----------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # Chain -----------------------------------------------------------------------------------

    async def latest_blockhash(self) -> Hash:
        return (await self.recent_blockhash()).blockhash

    async def recent_blockhash(self) -> RecentBlockhash:
        height = self._clock()
        while self._blockhashes and (
            len(self._blockhashes) >= MAX_BLOCKHASHES
            or next(iter(self._blockhashes.values())) < height
        ):
            self._blockhashes.popitem(last=False)
        blockhash = Hash(os.urandom(32))
        self._blockhashes[blockhash] = last_valid = height + BLOCKHASH_LIFETIME_BLOCKS
        return RecentBlockhash(blockhash, last_valid)

    async def block_height(self) -> int:
        return self._clock()

    def _blockhash_valid(self, blockhash: Hash) -> bool:
        last_valid = self._blockhashes.get(blockhash)
        return last_valid is not None and self._clock() <= last_valid

    async def send(self, tx: VersionedTransaction) -> str:
        signature = str(tx.signatures[0])
        known = self._db.execute(
            "SELECT error FROM transactions WHERE signature = ?", (signature,)
        ).fetchone()
        if known is not None:
            if known[0] is not None:
                raise TransactionFailed(known[0])
            return signature
        if not self._blockhash_valid(tx.message.recent_blockhash):
            raise TransactionFailed(
                "blockhash not found: it expired or was never issued; sign again with a new one"
            )
        result = self._svm.send_transaction(tx)
        error = _describe_failure(result) if isinstance(result, FailedTransactionMetadata) else None
        if self._svm.get_transaction(tx.signatures[0]) is None:  # refused before execution
            raise TransactionFailed(f"refused before execution: {error}")
        self._record(signature, tx, error)
        if error is not None:
            raise TransactionFailed(error)
        return signature

    def _record(self, signature: str, tx: VersionedTransaction, error: str | None) -> None:
        """Write down a processed transaction and the state of every account it names."""
        self._slot += 1
        keys = list(tx.message.account_keys)
        self._db.execute("BEGIN")
        self._db.execute(
            "INSERT INTO transactions (signature, slot, tx, error) VALUES (?, ?, ?, ?)",
            (signature, self._slot, bytes(tx), error),
        )
        self._db.executemany(
            "INSERT INTO mentions (address, slot, signature) VALUES (?, ?, ?)",
            [(str(key), self._slot, signature) for key in keys],
        )
        self._save_accounts(keys)
        self._db.execute("COMMIT")

    def _save_accounts(self, keys: list[Pubkey]) -> None:
        for key in keys:
            account = self._svm.get_account(key)
            if account is None or account.executable:
                self._db.execute("DELETE FROM accounts WHERE address = ?", (bytes(key),))
            elif str(account.owner) not in _NOT_STATE:
                self._db.execute(
                    "INSERT OR REPLACE INTO accounts (address, account) VALUES (?, ?)",
                    (bytes(key), bytes(account)),
                )

    async def transaction(self, signature: str) -> ChainTransaction | None:
        row = self._db.execute(
            "SELECT slot, tx, error FROM transactions WHERE signature = ?", (signature,)
        ).fetchone()
        if row is None:
            return None
        slot, raw, error = row
        return ChainTransaction(signature, slot, VersionedTransaction.from_bytes(raw), (), error)

    async def signatures_for(self, address: Pubkey, limit: int = 20, *,
                             before: str | None = None, until: str | None = None) -> list[str]:
        rows = self._db.execute(
            "SELECT signature FROM mentions WHERE address = ?"
            " AND slot < COALESCE((SELECT slot FROM transactions WHERE signature = ?), 1e18)"
            " AND slot > COALESCE((SELECT slot FROM transactions WHERE signature = ?), -1)"
            " ORDER BY slot DESC LIMIT ?",
            (str(address), before, until, limit),
        ).fetchall()
        return [row[0] for row in rows]

    async def sol_balance(self, owner: Pubkey) -> int:
        return self._svm.get_balance(owner) or 0

    async def token_balance(self, token_account: Pubkey) -> int:
        account = self._svm.get_account(token_account)
        return token_account_amount(bytes(account.data)) if account else 0

    async def account_exists(self, address: Pubkey) -> bool:
        account = self._svm.get_account(address)
        return account is not None and account.lamports > 0

    async def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # releases the lock

    # what the JSON-RPC node reads (node_*.py) ------------------------------------------------

    def account(self, address: Pubkey) -> Account | None:
        return self._svm.get_account(address)

    def program_accounts(self, program: Pubkey) -> list[tuple[Pubkey, Account]]:
        return list(self._svm.get_program_accounts(program))

    def blockhash_last_valid(self, blockhash: Hash) -> int | None:
        """The last block height at which a transaction signed with `blockhash` can land;
        None when this chain did not issue it (or forgot it: it expired, or a restart)."""
        return self._blockhashes.get(blockhash)

    def simulate(self, tx: VersionedTransaction,
                 ) -> SimulatedTransactionInfo | FailedTransactionMetadata:
        """Execute `tx` without keeping its effects (blockhash not checked)."""
        return self._svm.simulate_transaction(tx)

    def executed(self, signature: Signature,
                 ) -> TransactionMetadata | FailedTransactionMetadata | None:
        """What executing a transaction of this run gave: logs, fee, compute units."""
        return self._svm.get_transaction(signature)

    def rent_exempt_minimum(self, size: int) -> int:
        return int(self._svm.minimum_balance_for_rent_exemption(size))

    # local only ------------------------------------------------------------------------------

    def airdrop(self, owner: Pubkey, lamports: int) -> None:
        """Give `owner` SOL for fees (the local chain's own faucet)."""
        result = self._svm.airdrop(owner, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise TransactionFailed(_describe_failure(result))
        self._db.execute("BEGIN")
        self._save_accounts([owner])
        self._db.execute("COMMIT")


class ChainInUse(ChainError):
    """Another process (a running gateway) has the local chain open."""


def _lock(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on the chain while it is open: its state lives in the opening
    process's memory, so a second process sending transactions would overwrite, or be
    overwritten by, the first's. Readers (the operator's audit) open it without the lock."""
    handle = path.with_name(path.name + ".lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ChainInUse(f"the local chain {path} is open in another process (a running "
                         "gateway): stop it first") from None
    return handle


# Sysvars and programs come with every LiteSVM; only user state is persisted.
_NOT_STATE = {
    "Sysvar1111111111111111111111111111111111111",
    "NativeLoader1111111111111111111111111111111",
}


def _clock_height() -> int:
    """The local chain's block height: blocks made since the epoch, one every `BLOCK_S`."""
    return int(time.time() / BLOCK_S)


def _describe_failure(result: FailedTransactionMetadata) -> str:
    """The error and the program's own explanation, e.g. 'InstructionError(0, Custom(1)):
    Program log: Error: insufficient funds'."""
    reason = str(result.err()).removeprefix("TransactionError").removeprefix("Fieldless.")
    logs = [line for line in result.meta().logs() if "rror" in line or "failed" in line]
    return f"{reason}: {logs[0]}" if logs else reason

