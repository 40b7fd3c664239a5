"""SQLite implementation of `Store` (the default ledger, one file in the data dir).

Each method is one short transaction on indexed rows. WAL mode makes a commit a page append
without fsync, so running these statements inline on the event loop costs a few microseconds
and avoids a thread hop per request; a crash (even SIGKILL) never loses a committed transaction.
The gateway's connection never checkpoints the WAL itself (that fsyncs, which would stall the
loop); `maintain()` does it from a worker thread on a second connection instead.
Schema changes are migrations keyed on `PRAGMA user_version`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nexus_app.file_modes import private_file
from nexus_app.gateway.ledger.store import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DEPOSIT,
    FREE_CREDIT,
    FREE_CREDIT_LAPSE,
    FREE_SPENT,
    GRANT,
    PAYOUT,
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PAYOUT_PENDING,
    PAYOUT_SENT,
    PROMO_FUNDING,
    REFUND,
    RESERVE,
    SETTLE,
    TREASURY_FEE,
    WORKER_EARNING,
    AccountBalance,
    ApiKeyRecord,
    DepositEntry,
    DepositIntent,
    FreeTopUp,
    LedgerAudit,
    Payout,
    Settlement,
    Webhook,
    WebhookDelivery,
    WorkerEarnings,
)

MIGRATIONS: list[str] = [
    """
    CREATE TABLE accounts (
        account     TEXT PRIMARY KEY,
        balance     INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
        reserved    INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
        total_spent INTEGER NOT NULL DEFAULT 0,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE ledger (
        id      INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        kind    TEXT NOT NULL,
        account TEXT,
        wallet  TEXT,
        amount  INTEGER NOT NULL CHECK (amount > 0),
        ref     TEXT
    );
    CREATE TABLE reservations (
        id         TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        amount     INTEGER NOT NULL CHECK (amount >= 0),
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE worker_accounts (
        wallet TEXT PRIMARY KEY,
        earned INTEGER NOT NULL DEFAULT 0,
        paid   INTEGER NOT NULL DEFAULT 0 CHECK (paid <= earned)
    );
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        account      TEXT NOT NULL,
        name         TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        secret_hash  TEXT NOT NULL UNIQUE,
        created_at   REAL NOT NULL,
        last_used_at REAL,
        revoked_at   REAL,
        rpm          INTEGER,
        tpm          INTEGER
    );
    CREATE INDEX api_keys_account ON api_keys (account);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    """
    ALTER TABLE worker_accounts ADD COLUMN paying INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE deposit_intents (
        id         TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        reference  TEXT NOT NULL UNIQUE,
        amount     INTEGER NOT NULL CHECK (amount > 0),
        memo       TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX deposit_intents_account ON deposit_intents (account, created_at);
    CREATE INDEX deposit_intents_expiry ON deposit_intents (expires_at);
    CREATE TABLE deposits (
        signature   TEXT PRIMARY KEY,
        reference   TEXT NOT NULL REFERENCES deposit_intents (reference),
        account     TEXT NOT NULL,
        amount      INTEGER NOT NULL CHECK (amount > 0),
        credited_at REAL NOT NULL
    );
    CREATE INDEX deposits_reference ON deposits (reference);
    CREATE TABLE payouts (
        id         TEXT PRIMARY KEY,
        wallet     TEXT NOT NULL,
        amount     INTEGER NOT NULL CHECK (amount > 0),
        status     TEXT NOT NULL,
        signature  TEXT UNIQUE,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX payouts_wallet ON payouts (wallet, created_at);
    CREATE INDEX payouts_status ON payouts (status);
    """,
    """
    ALTER TABLE accounts ADD COLUMN free_balance INTEGER NOT NULL DEFAULT 0
        CHECK (free_balance >= 0);
    ALTER TABLE accounts ADD COLUMN free_week INTEGER;
    ALTER TABLE reservations ADD COLUMN free_amount INTEGER NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE webhooks (
        id                    TEXT PRIMARY KEY,
        account               TEXT NOT NULL,
        url                   TEXT NOT NULL,
        events                TEXT NOT NULL,
        balance_low_threshold INTEGER,
        created_at            REAL NOT NULL,
        balance_low_sent      INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX webhooks_account ON webhooks (account);
    CREATE TABLE webhook_deliveries (
        id              TEXT PRIMARY KEY,
        webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        event_id        TEXT NOT NULL,
        event           TEXT NOT NULL,
        payload         BLOB NOT NULL,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at      REAL NOT NULL,
        last_status     INTEGER,
        last_error      TEXT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
    CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);
    """,
    # when a worker wallet first earned, for the hold on new workers' earnings
    """
    ALTER TABLE worker_accounts ADD COLUMN first_earned_at REAL;
    """,
    # the promotional pool that backs free credit: its balance, the on-chain fundings credited
    # to it (once per signature), and the free credit a short pool still owes an account this
    # week. Free credit issued before the pool existed came from nothing: it is recorded as a
    # grant into the pool (a ledger grant without an account), and what of it was spent as
    # spent free credit, so that every audit identity holds on an existing ledger.
    """
    CREATE TABLE promo_pool (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        balance INTEGER NOT NULL CHECK (balance >= 0)
    );
    INSERT INTO promo_pool (id, balance) VALUES (1, 0);
    CREATE TABLE promo_fundings (
        signature   TEXT PRIMARY KEY,
        amount      INTEGER NOT NULL CHECK (amount > 0),
        source      TEXT NOT NULL,
        credited_at REAL NOT NULL
    );
    ALTER TABLE accounts ADD COLUMN free_short INTEGER NOT NULL DEFAULT 0
        CHECK (free_short >= 0);
    INSERT INTO ledger (at, kind, amount, ref)
        SELECT CAST(strftime('%s', 'now') AS REAL), 'grant', issued,
               'promotional pool: free credit issued before it existed'
        FROM (SELECT COALESCE(SUM(amount), 0) AS issued FROM ledger WHERE kind = 'free_credit')
        WHERE issued > 0;
    INSERT INTO ledger (at, kind, amount, ref)
        SELECT CAST(strftime('%s', 'now') AS REAL), 'free_spent', spent,
               'free credit spent before the promotional pool existed'
        FROM (SELECT (SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'free_credit')
                   - (SELECT COALESCE(SUM(free_balance), 0) FROM accounts)
                   - (SELECT COALESCE(SUM(free_amount), 0) FROM reservations) AS spent)
        WHERE spent > 0;
    """,
    # where the deposit watcher stopped reading an address's signatures (the treasury token
    # account's), so that each round asks the chain only for what is newer
    """
    CREATE TABLE deposit_scan_cursors (
        address   TEXT PRIMARY KEY,
        signature TEXT NOT NULL
    );
    """,
    # the block height after which a sent payout's transfer can no longer land: a payout is
    # failed only by the chain's verdict or past this height, never by an RPC error or a clock
    """
    ALTER TABLE payouts ADD COLUMN last_valid_block_height INTEGER;
    """,
    # a webhook delivery keeps an outcome class ("2xx", "timeout"), never the receiver's own
    # status or error text; and the models each account with webhooks was served, so that
    # model.unavailable goes only to accounts that used the model, once an hour at most
    """
    ALTER TABLE webhook_deliveries ADD COLUMN last_outcome TEXT;
    UPDATE webhook_deliveries SET last_outcome = CASE
        WHEN last_status IS NOT NULL THEN CAST(last_status / 100 AS TEXT) || 'xx'
        WHEN last_error IS NOT NULL THEN 'error' END,
        last_status = NULL, last_error = NULL;
    CREATE TABLE webhook_models (
        account    TEXT NOT NULL,
        model      TEXT NOT NULL,
        served_at  REAL NOT NULL,
        alerted_at REAL,
        PRIMARY KEY (account, model)
    ) WITHOUT ROWID;
    CREATE INDEX webhook_models_model ON webhook_models (model);
    CREATE INDEX webhook_models_served ON webhook_models (served_at);
    """,
]


class SQLiteStore:
    """`Store` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None

    # lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        self.open_sync()
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)

    async def maintain(self) -> None:
        """Copy the write-ahead log into the database file, off the event loop."""
        if self._checkpointer is not None:
            await asyncio.to_thread(
                self._checkpointer.execute, "PRAGMA wal_checkpoint(PASSIVE)"
            )

    def open_sync(self) -> None:
        private_file(self.path)  # the ledger is the operator's: 0600 in a 0700 data dir
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        self._migrate()

    async def close(self) -> None:
        for db in (self._checkpointer, self._db):
            if db is not None:
                db.close()
        self._db = self._checkpointer = None

    async def ping(self) -> None:
        self.db.execute("SELECT 1").fetchone()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._tx() as db:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _entry(
        db: sqlite3.Connection,
        kind: str,
        amount: int,
        *,
        account: str | None = None,
        wallet: str | None = None,
        ref: str | None = None,
    ) -> None:
        SQLiteStore._entries(db, [(kind, amount, account, wallet, ref)])

    @staticmethod
    def _entries(
        db: sqlite3.Connection, entries: list[tuple[str, int, str | None, str | None, str | None]]
    ) -> None:
        """Append ledger entries (kind, amount, account, wallet, ref); zero amounts are skipped."""
        now = time.time()
        db.executemany(
            "INSERT INTO ledger (at, kind, account, wallet, amount, ref) VALUES (?, ?, ?, ?, ?, ?)",
            [(now, kind, account, wallet, amount, ref)
             for kind, amount, account, wallet, ref in entries if amount > 0],
        )

    @staticmethod
    def _ensure_account(db: sqlite3.Connection, account: str) -> None:
        db.execute(
            "INSERT INTO accounts (account, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (account, time.time()),
        )

    # ledger ------------------------------------------------------------------------------------

    async def grant(self, account: str, amount: int, memo: str) -> None:
        self.grant_sync(account, amount, memo)

    def grant_sync(self, account: str, amount: int, memo: str) -> None:
        if amount <= 0:
            raise ValueError("a grant is a positive amount")
        with self._tx() as db:
            self._ensure_account(db, account)
            db.execute(
                "UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE account = ?",
                (amount, time.time(), account),
            )
            self._entry(db, GRANT, amount, account=account, ref=memo)

    async def top_up_free_credit(self, account: str, week: int, amount: int) -> FreeTopUp:
        short = self._free_credit_short(account, week)
        if short is not None:
            return FreeTopUp(short=short)
        with self._tx() as db:
            self._ensure_account(db, account)
            free, last_week, short = db.execute(
                "SELECT free_balance, free_week, free_short FROM accounts WHERE account = ?",
                (account,),
            ).fetchone()
            new_week = last_week is None or last_week < week
            if not new_week and not short:
                return FreeTopUp()
            lapsed = free if new_week else 0
            wanted = amount if new_week else short
            pool = db.execute("SELECT balance FROM promo_pool WHERE id = 1").fetchone()[0]
            granted = min(wanted, pool + lapsed)
            # the CHECKs (pool and free balance >= 0) refuse any overdraw inside the statements
            db.execute("UPDATE promo_pool SET balance = balance + ? - ? WHERE id = 1",
                       (lapsed, granted))
            db.execute(
                "UPDATE accounts SET free_balance = free_balance - ? + ?, free_short = ?,"
                " free_week = ?, updated_at = ? WHERE account = ?",
                (lapsed, granted, wanted - granted, week if new_week else last_week,
                 time.time(), account),
            )
            self._entries(db, [
                (FREE_CREDIT_LAPSE, lapsed, account, None, f"week {last_week}"),
                (FREE_CREDIT, granted, account, None, f"week {week}"),
            ])
        return FreeTopUp(granted, lapsed, wanted - granted)

    def _free_credit_short(self, account: str, week: int) -> int | None:
        """What the pool still owes the account this week when a top-up would change nothing
        (issued in full, or the pool is empty); None when there is something to do. A read,
        without the write lock."""
        row = self.db.execute(
            "SELECT a.free_week, a.free_short, p.balance FROM accounts a, promo_pool p"
            " WHERE a.account = ? AND p.id = 1",
            (account,),
        ).fetchone()
        if row is None or row[0] is None or row[0] < week:
            return None
        return int(row[1]) if row[1] == 0 or row[2] == 0 else None

    async def credit_promo_funding(self, signature: str, amount: int, source: str) -> bool:
        if amount <= 0:
            raise ValueError("a pool funding is a positive amount")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM deposits WHERE signature = ?", (signature,)).fetchone():
                return False
            if not db.execute(
                "INSERT INTO promo_fundings (signature, amount, source, credited_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (signature) DO NOTHING",
                (signature, amount, source, time.time()),
            ).rowcount:
                return False
            db.execute("UPDATE promo_pool SET balance = balance + ? WHERE id = 1", (amount,))
            self._entry(db, PROMO_FUNDING, amount, ref=signature)
        return True

    async def promo_pool(self) -> int:
        return int(self.db.execute("SELECT balance FROM promo_pool WHERE id = 1").fetchone()[0])

    async def reserve(self, reservation_id: str, account: str, amount: int) -> bool:
        """Move `amount` to reserved, free credit first, only if the credit covers it."""
        with self._tx() as db:
            row = db.execute(
                "SELECT free_balance FROM accounts WHERE account = ?", (account,)
            ).fetchone()
            free = min(row[0], amount) if row else 0
            moved = db.execute(
                "UPDATE accounts SET free_balance = free_balance - ?, balance = balance - ?,"
                " reserved = reserved + ?, updated_at = ?"
                " WHERE account = ? AND free_balance >= ? AND balance >= ?",
                (free, amount - free, amount, time.time(), account, free, amount - free),
            ).rowcount
            if not moved:
                return False
            db.execute(
                "INSERT INTO reservations (id, account, amount, free_amount, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (reservation_id, account, amount, free, time.time()),
            )
            self._entry(db, RESERVE, amount, account=account, ref=reservation_id)
        return True

    async def settle(self, reservation_id: str, settlement: Settlement) -> bool:
        """Close a reservation: charge `cost`, refund the rest, pay worker and treasury.
        False (and no change) when the reservation is not open."""
        s = settlement
        if s.worker_amount + s.treasury_amount != s.cost or min(s.cost, s.worker_amount) < 0:
            raise ValueError("settlement parts must add up to the cost")
        with self._tx() as db:
            row = self._take_reservation(db, reservation_id)
            if row is None:
                return False
            account, reserved, free = row
            if s.cost > reserved:
                raise ValueError("cannot settle more than was reserved")
            free_back = free - min(free, s.cost)  # the cost is paid from free credit first
            self._return(db, account, reserved, reserved - s.cost - free_back, free_back,
                         spent=s.cost)
            if s.worker_amount:
                if not s.worker_wallet:
                    raise ValueError("a worker earning needs a wallet")
                db.execute(
                    "INSERT INTO worker_accounts (wallet, earned, first_earned_at)"
                    " VALUES (?, ?, ?)"
                    " ON CONFLICT (wallet) DO UPDATE SET earned = earned + excluded.earned",
                    (s.worker_wallet, s.worker_amount, time.time()),
                )
            self._entries(db, [
                (SETTLE, s.cost, account, None, reservation_id),
                (FREE_SPENT, min(free, s.cost), account, None, reservation_id),
                (REFUND, reserved - s.cost, account, None, reservation_id),
                (WORKER_EARNING, s.worker_amount, None, s.worker_wallet, reservation_id),
                (TREASURY_FEE, s.treasury_amount, None, None, reservation_id),
            ])
        return True

    async def release(self, reservation_id: str) -> bool:
        """Refund a reservation in full. False when it is not open."""
        with self._tx() as db:
            return self._release(db, reservation_id)

    def _release(self, db: sqlite3.Connection, reservation_id: str) -> bool:
        row = self._take_reservation(db, reservation_id)
        if row is None:
            return False
        account, amount, free = row
        self._return(db, account, amount, amount - free, free)
        self._entry(db, REFUND, amount, account=account, ref=reservation_id)
        return True

    @staticmethod
    def _take_reservation(db: sqlite3.Connection,
                          reservation_id: str) -> tuple[str, int, int] | None:
        """Close an open reservation: its (account, amount, free part), or None when it is
        not open (so settling or releasing it twice changes nothing)."""
        row = db.execute(
            "DELETE FROM reservations WHERE id = ? RETURNING account, amount, free_amount",
            (reservation_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    @staticmethod
    def _return(db: sqlite3.Connection, account: str, reserved: int, paid: int, free: int,
                spent: int = 0) -> None:
        """Close `reserved` on the account: `spent` is charged, `paid` and `free` credit
        go back."""
        db.execute(
            "UPDATE accounts SET reserved = reserved - ?, balance = balance + ?,"
            " free_balance = free_balance + ?, total_spent = total_spent + ?, updated_at = ?"
            " WHERE account = ?",
            (reserved, paid, free, spent, time.time(), account),
        )

    async def release_all_open(self) -> int:
        """Refund every open reservation (those a crashed gateway left); returns how many."""
        return self.release_all_open_sync()

    def release_all_open_sync(self) -> int:
        with self._tx() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM reservations").fetchall()]
            for reservation_id in ids:
                self._release(db, reservation_id)
        return len(ids)

    async def balance(self, account: str) -> AccountBalance:
        row = self.db.execute(
            "SELECT balance, reserved, total_spent, updated_at, free_balance FROM accounts"
            " WHERE account = ?",
            (account,),
        ).fetchone()
        if row is None:
            return AccountBalance(account, 0, 0, 0, 0.0)
        return AccountBalance(account, *row)

    async def worker_earnings(self, wallet: str) -> WorkerEarnings:
        row = self.db.execute(
            "SELECT earned, paid, paying, first_earned_at FROM worker_accounts WHERE wallet = ?",
            (wallet,),
        ).fetchone()
        return WorkerEarnings(wallet, *(row or (0, 0, 0, None)))

    async def audit(self) -> LedgerAudit:
        return self.audit_sync()

    def audit_sync(self) -> LedgerAudit:
        db = self.db
        db.execute("BEGIN")  # one consistent snapshot for all the sums
        try:
            sums = dict(db.execute("SELECT kind, SUM(amount) FROM ledger GROUP BY kind").fetchall())
            kept = self._kept_totals(db)
        finally:
            db.execute("COMMIT")
        total = {k: int(sums.get(k) or 0) for k in (
            DEPOSIT, GRANT, FREE_CREDIT, RESERVE, SETTLE, REFUND, WORKER_EARNING, TREASURY_FEE,
            PAYOUT, PROMO_FUNDING, FREE_CREDIT_LAPSE, FREE_SPENT,
        )}
        pool_grants = kept.pop("pool_grants")
        return LedgerAudit(
            deposits=total[DEPOSIT],
            grants=total[GRANT],
            free_credits=total[FREE_CREDIT],
            treasury_fees=total[TREASURY_FEE],
            payouts=total[PAYOUT],
            derived_balances=(total[DEPOSIT] + total[GRANT] - pool_grants + total[FREE_CREDIT]
                              - total[FREE_CREDIT_LAPSE] - total[RESERVE] + total[REFUND]),
            derived_reserved=total[RESERVE] - total[SETTLE] - total[REFUND],
            settled=total[SETTLE],
            promo_funding=total[PROMO_FUNDING],
            derived_pool=(total[PROMO_FUNDING] + pool_grants - total[FREE_CREDIT]
                          + total[FREE_CREDIT_LAPSE]),
            free_lapsed=total[FREE_CREDIT_LAPSE],
            free_spent=total[FREE_SPENT],
            **kept,
        )

    @staticmethod
    def _kept_totals(db: sqlite3.Connection) -> dict[str, int]:
        """The kept balances the ledger's entries are checked against (in the caller's
        snapshot); `pool_grants` are grants without an account, into the pool."""
        def one(sql: str, *args: str) -> int:
            return int(db.execute(sql, args).fetchone()[0])

        kept: dict[str, int] = {}
        (kept["balances"], kept["reserved"], kept["free_balances"]) = db.execute(
            "SELECT COALESCE(SUM(balance + free_balance), 0), COALESCE(SUM(reserved), 0),"
            " COALESCE(SUM(free_balance), 0) FROM accounts"
        ).fetchone()
        kept["open_reservations"], kept["free_reserved"] = db.execute(
            "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(free_amount), 0) FROM reservations"
        ).fetchone()
        kept["worker_earnings"], kept["paid"] = db.execute(
            "SELECT COALESCE(SUM(earned), 0), COALESCE(SUM(paid), 0) FROM worker_accounts"
        ).fetchone()
        kept["pool"] = one("SELECT balance FROM promo_pool WHERE id = 1")
        kept["promo_fundings"] = one("SELECT COALESCE(SUM(amount), 0) FROM promo_fundings")
        kept["pool_grants"] = one("SELECT COALESCE(SUM(amount), 0) FROM ledger"
                                  " WHERE kind = ? AND account IS NULL", GRANT)
        return kept

    # deposits ----------------------------------------------------------------------------------

    _INTENT_COLUMNS = "id, account, reference, amount, memo, created_at, expires_at"

    _UNCREDITED = "NOT EXISTS (SELECT 1 FROM deposits d WHERE d.reference = i.reference)"

    async def add_deposit_intent(self, intent: DepositIntent, max_open: int) -> bool:
        with self._tx() as db:
            return bool(db.execute(
                f"INSERT INTO deposit_intents ({self._INTENT_COLUMNS})"
                " SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM deposit_intents i"
                f" WHERE account = ? AND expires_at > ? AND {self._UNCREDITED}) < ?",
                (intent.id, intent.account, intent.reference, intent.amount, intent.memo,
                 intent.created_at, intent.expires_at, intent.account, intent.created_at,
                 max_open),
            ).rowcount)

    async def deposit_intent(self, reference: str) -> DepositIntent | None:
        row = self.db.execute(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents WHERE reference = ?",
            (reference,),
        ).fetchone()
        return DepositIntent(*row) if row else None

    async def open_deposit_intents(self, now: float, account: str | None = None,
                                   limit: int | None = None) -> list[DepositIntent]:
        rows = self.db.execute(
            f"SELECT {self._INTENT_COLUMNS} FROM deposit_intents i WHERE expires_at > ?"
            f" AND (? IS NULL OR account = ?) AND {self._UNCREDITED}"
            " ORDER BY expires_at LIMIT ?",
            (now, account, account, -1 if limit is None else limit),
        ).fetchall()
        return [DepositIntent(*row) for row in rows]

    async def prune_deposit_intents(self, expired_before: float) -> int:
        with self._tx() as db:
            return int(db.execute(
                f"DELETE FROM deposit_intents AS i WHERE expires_at < ? AND {self._UNCREDITED}",
                (expired_before,),
            ).rowcount)

    async def deposit_scan_cursor(self, address: str) -> str | None:
        row = self.db.execute(
            "SELECT signature FROM deposit_scan_cursors WHERE address = ?", (address,)
        ).fetchone()
        return row[0] if row else None

    async def set_deposit_scan_cursor(self, address: str, signature: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO deposit_scan_cursors (address, signature) VALUES (?, ?)"
                " ON CONFLICT (address) DO UPDATE SET signature = excluded.signature",
                (address, signature),
            )

    async def credit_deposit(self, signature: str, intent: DepositIntent) -> bool:
        with self._tx() as db:
            inserted = db.execute(
                "INSERT INTO deposits (signature, reference, account, amount, credited_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (signature) DO NOTHING",
                (signature, intent.reference, intent.account, intent.amount, time.time()),
            ).rowcount
            if not inserted:
                return False
            self._ensure_account(db, intent.account)
            db.execute(
                "UPDATE accounts SET balance = balance + ?, updated_at = ? WHERE account = ?",
                (intent.amount, time.time(), intent.account),
            )
            self._entry(db, DEPOSIT, intent.amount, account=intent.account, ref=signature)
        return True

    async def deposit_history(self, account: str, limit: int) -> list[DepositEntry]:
        columns = ", ".join(f"i.{c.strip()}" for c in self._INTENT_COLUMNS.split(","))
        rows = self.db.execute(
            f"SELECT {columns}, d.signature, d.credited_at FROM deposit_intents i"
            " LEFT JOIN deposits d ON d.reference = i.reference WHERE i.account = ?"
            " ORDER BY i.created_at DESC LIMIT ?",
            (account, limit),
        ).fetchall()
        return [DepositEntry(DepositIntent(*row[:7]), row[7], row[8]) for row in rows]

    # payouts -----------------------------------------------------------------------------------

    _PAYOUT_COLUMNS = ("id, wallet, amount, status, signature, created_at, updated_at,"
                       " last_valid_block_height")

    async def begin_payout(self, payout_id: str, wallet: str, minimum: int = 1) -> Payout | None:
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT earned - paid - paying FROM worker_accounts WHERE wallet = ?", (wallet,)
            ).fetchone()
            amount = row[0] if row else 0
            if amount < max(1, minimum) or not db.execute(
                "UPDATE worker_accounts SET paying = paying + ?"
                " WHERE wallet = ? AND earned - paid - paying >= ?",
                (amount, wallet, amount),
            ).rowcount:
                return None
            db.execute(
                f"INSERT INTO payouts ({self._PAYOUT_COLUMNS})"
                " VALUES (?, ?, ?, ?, NULL, ?, ?, NULL)",
                (payout_id, wallet, amount, PAYOUT_PENDING, now, now),
            )
        return Payout(payout_id, wallet, amount, PAYOUT_PENDING, None, now, now)

    async def payout_sent(self, payout_id: str, signature: str,
                          last_valid_block_height: int | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE payouts SET status = ?, signature = ?, last_valid_block_height = ?,"
                " updated_at = ? WHERE id = ? AND status = ?",
                (PAYOUT_SENT, signature, last_valid_block_height, time.time(), payout_id,
                 PAYOUT_PENDING),
            )

    async def payout_deadline(self, payout_id: str, last_valid_block_height: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE payouts SET last_valid_block_height = ? WHERE id = ? AND status = ?"
                " AND last_valid_block_height IS NULL",
                (last_valid_block_height, payout_id, PAYOUT_SENT),
            )

    async def finish_payout(self, payout_id: str, paid: bool) -> Payout | None:
        with self._tx() as db:
            row = db.execute(
                "UPDATE payouts SET status = ?, updated_at = ? WHERE id = ? AND status IN (?, ?)"
                f" RETURNING {self._PAYOUT_COLUMNS}",
                (PAYOUT_PAID if paid else PAYOUT_FAILED, time.time(), payout_id,
                 PAYOUT_PENDING, PAYOUT_SENT),
            ).fetchone()
            if row is None:
                return None
            payout = Payout(*row)
            db.execute(
                "UPDATE worker_accounts SET paying = paying - ?, paid = paid + ? WHERE wallet = ?",
                (payout.amount, payout.amount if paid else 0, payout.wallet),
            )
            if paid:
                self._entry(db, PAYOUT, payout.amount, wallet=payout.wallet, ref=payout.id)
        return payout

    async def open_payouts(self) -> list[Payout]:
        rows = self.db.execute(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE status IN (?, ?)",
            (PAYOUT_PENDING, PAYOUT_SENT),
        ).fetchall()
        return [Payout(*row) for row in rows]

    async def payouts(self, wallet: str, limit: int) -> list[Payout]:
        rows = self.db.execute(
            f"SELECT {self._PAYOUT_COLUMNS} FROM payouts WHERE wallet = ?"
            " ORDER BY created_at DESC LIMIT ?",
            (wallet, limit),
        ).fetchall()
        return [Payout(*row) for row in rows]

    # webhooks ----------------------------------------------------------------------------------

    _HOOK_COLUMNS = "id, account, url, events, balance_low_threshold, created_at, balance_low_sent"
    _DELIVERY_COLUMNS = ("id, webhook_id, event_id, event, payload, status, attempts,"
                         " next_attempt_at, created_at, last_outcome")

    @staticmethod
    def _webhook(row: tuple[Any, ...]) -> Webhook:
        hook_id, account, url, events, threshold, created_at, sent = row
        return Webhook(hook_id, account, url, tuple(events.split()), threshold, created_at,
                       bool(sent))

    async def add_webhook(self, webhook: Webhook) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO webhooks ({self._HOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (webhook.id, webhook.account, webhook.url, " ".join(webhook.events),
                 webhook.balance_low_threshold, webhook.created_at, int(webhook.balance_low_sent)),
            )

    async def webhooks(self, account: str | None = None) -> list[Webhook]:
        where, args = ("WHERE account = ?", (account,)) if account is not None else ("", ())
        rows = self.db.execute(
            f"SELECT {self._HOOK_COLUMNS} FROM webhooks {where} ORDER BY created_at", args
        ).fetchall()
        return [self._webhook(row) for row in rows]

    async def delete_webhook(self, account: str, webhook_id: str) -> bool:
        with self._tx() as db:
            return bool(db.execute(
                "DELETE FROM webhooks WHERE id = ? AND account = ?", (webhook_id, account)
            ).rowcount)

    async def set_balance_low_sent(self, webhook_id: str, sent: bool) -> None:
        with self._tx() as db:
            db.execute("UPDATE webhooks SET balance_low_sent = ? WHERE id = ?",
                       (int(sent), webhook_id))

    async def add_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        with self._tx() as db:
            db.executemany(
                f"INSERT INTO webhook_deliveries ({self._DELIVERY_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(d.id, d.webhook_id, d.event_id, d.event, d.payload, d.status, d.attempts,
                  d.next_attempt_at, d.created_at, d.last_outcome)
                 for d in deliveries],
            )

    async def due_deliveries(self, now: float, limit: int) -> list[tuple[WebhookDelivery, str]]:
        columns = ", ".join(f"d.{c.strip()}" for c in self._DELIVERY_COLUMNS.split(","))
        rows = self.db.execute(
            f"SELECT {columns}, w.url FROM webhook_deliveries d"
            " JOIN webhooks w ON w.id = d.webhook_id"
            " WHERE d.status = ? AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at LIMIT ?",
            (DELIVERY_PENDING, now, limit),
        ).fetchall()
        return [(WebhookDelivery(*row[:-1]), row[-1]) for row in rows]

    async def record_attempt(self, delivery_id: str, status: str, next_attempt_at: float,
                             outcome: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
                " next_attempt_at = ?, last_outcome = ? WHERE id = ?",
                (status, next_attempt_at, outcome, delivery_id),
            )

    async def deliveries(self, webhook_id: str, limit: int) -> list[WebhookDelivery]:
        rows = self.db.execute(
            f"SELECT {self._DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?"
            " ORDER BY created_at DESC LIMIT ?",
            (webhook_id, limit),
        ).fetchall()
        return [WebhookDelivery(*row) for row in rows]

    async def note_model_served(self, account: str, model: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO webhook_models (account, model, served_at) VALUES (?, ?, ?)"
                " ON CONFLICT (account, model) DO UPDATE SET served_at = excluded.served_at",
                (account, model, at),
            )

    async def claim_model_alerts(self, model: str, alerted_before: float,
                                 now: float) -> list[str]:
        with self._tx() as db:
            accounts = [row[0] for row in db.execute(
                "SELECT account FROM webhook_models WHERE model = ?"
                " AND (alerted_at IS NULL OR alerted_at <= ?)", (model, alerted_before))]
            db.executemany("UPDATE webhook_models SET alerted_at = ? WHERE account = ?"
                           " AND model = ?", [(now, account, model) for account in accounts])
        return accounts

    async def forget_models_served(self, account: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM webhook_models WHERE account = ?", (account,))

    async def prune_webhooks(self, before: float) -> int:
        with self._tx() as db:
            deleted = db.execute(
                "DELETE FROM webhook_deliveries WHERE status IN (?, ?) AND next_attempt_at < ?",
                (DELIVERY_DELIVERED, DELIVERY_FAILED, before)).rowcount
            db.execute("DELETE FROM webhook_models WHERE served_at < ?", (before,))
        return int(deleted)

    # API keys and sessions ---------------------------------------------------------------------

    async def add_key(self, key: ApiKeyRecord) -> None:
        with self._tx() as db:
            self._ensure_account(db, key.account)
            db.execute(
                "INSERT INTO api_keys (id, account, name, prefix, secret_hash, created_at,"
                " rpm, tpm) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.account, key.name, key.prefix, key.secret_hash, key.created_at,
                 key.rpm, key.tpm),
            )

    _KEY_COLUMNS = (
        "id, account, name, prefix, secret_hash, created_at, last_used_at, revoked_at, rpm, tpm"
    )

    async def key_by_hash(self, secret_hash: str) -> ApiKeyRecord | None:
        row = self.db.execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
        return ApiKeyRecord(*row) if row else None

    async def list_keys(self, account: str) -> list[ApiKeyRecord]:
        rows = self.db.execute(
            f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE account = ? ORDER BY created_at",
            (account,),
        ).fetchall()
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_key(self, account: str, key_id: str, now: float) -> ApiKeyRecord | None:
        with self._tx() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND account = ?"
                " AND revoked_at IS NULL",
                (now, key_id, account),
            )
            row = db.execute(
                f"SELECT {self._KEY_COLUMNS} FROM api_keys WHERE id = ? AND account = ?",
                (key_id, account),
            ).fetchone()
        return ApiKeyRecord(*row) if row else None

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        if last_used:
            with self._tx() as db:
                db.executemany(
                    "UPDATE api_keys SET last_used_at = ? WHERE id = ?",
                    [(at, key_id) for key_id, at in last_used.items()],
                )

    async def add_session(self, token_hash: str, account: str, expires_at: float) -> None:
        with self._tx() as db:
            self._ensure_account(db, account)
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
            db.execute(
                "INSERT INTO sessions (token_hash, account, expires_at) VALUES (?, ?, ?)",
                (token_hash, account, expires_at),
            )

    async def session_account(self, token_hash: str, now: float) -> str | None:
        row = self.db.execute(
            "SELECT account FROM sessions WHERE token_hash = ? AND expires_at > ?",
            (token_hash, now),
        ).fetchone()
        return row[0] if row else None
