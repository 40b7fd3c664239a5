"""The ledger's schema: its migrations in order (`migrations[n]` takes a file from version n to
n + 1, see `nexus_app.sqlite.migrate`). Append only: a released migration never changes."""

from __future__ import annotations

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
    # the gateway replica that holds each reservation: a replica refunds only its own at
    # start (the single process is "main")
    """
    ALTER TABLE reservations ADD COLUMN replica TEXT NOT NULL DEFAULT 'main';
    """,
    # sealed conversation records (userid history turns, stored responses): the text only as
    # AES-GCM ciphertext under a key derived from the API key that wrote it, never stored
    """
    CREATE TABLE conversations (
        id         TEXT PRIMARY KEY,
        account    TEXT NOT NULL,
        key_id     TEXT NOT NULL,
        kind       TEXT NOT NULL,
        label      TEXT,
        salt       BLOB NOT NULL,
        nonce      BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX conversations_account ON conversations (account, label, created_at);
    CREATE INDEX conversations_key ON conversations (key_id);
    CREATE INDEX conversations_expiry ON conversations (expires_at);
    """,
]
