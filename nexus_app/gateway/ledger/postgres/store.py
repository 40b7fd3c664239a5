"""`Store` on one PostgreSQL database (`ledger_url`), shared by every gateway replica: each
slice's module on the pool of `base.py`, its schema in `schema.py`."""

from __future__ import annotations

from nexus_app.gateway.ledger.postgres.audit import PostgresAudit
from nexus_app.gateway.ledger.postgres.conversations import PostgresConversations
from nexus_app.gateway.ledger.postgres.deposits import PostgresDeposits
from nexus_app.gateway.ledger.postgres.earnings import PostgresEarnings
from nexus_app.gateway.ledger.postgres.keys import PostgresKeys
from nexus_app.gateway.ledger.postgres.ledger import PostgresLedger
from nexus_app.gateway.ledger.postgres.promo import PostgresPromo
from nexus_app.gateway.ledger.postgres.webhooks import PostgresWebhooks


class PostgresStore(PostgresLedger, PostgresPromo, PostgresAudit, PostgresDeposits,
                    PostgresEarnings, PostgresWebhooks, PostgresKeys, PostgresConversations):
    """`Store` on one PostgreSQL database."""
