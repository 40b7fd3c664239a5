"""`Store` on one SQLite file (the default ledger, in the data dir): every slice's module on
the one connection of `base.py`, its schema in `schema.py`."""

from __future__ import annotations

from nexus_app.gateway.ledger.sqlite.audit import SQLiteAudit
from nexus_app.gateway.ledger.sqlite.conversations import SQLiteConversations
from nexus_app.gateway.ledger.sqlite.deposits import SQLiteDeposits
from nexus_app.gateway.ledger.sqlite.earnings import SQLiteEarnings
from nexus_app.gateway.ledger.sqlite.keys import SQLiteKeys
from nexus_app.gateway.ledger.sqlite.ledger import SQLiteLedger
from nexus_app.gateway.ledger.sqlite.promo import SQLitePromo
from nexus_app.gateway.ledger.sqlite.webhooks import SQLiteWebhooks


class SQLiteStore(SQLiteLedger, SQLitePromo, SQLiteAudit, SQLiteDeposits, SQLiteEarnings,
                  SQLiteWebhooks, SQLiteKeys, SQLiteConversations):
    """`Store` on one SQLite file."""
