"""The PostgreSQL implementation of the ledger store (`ledger_url`), for one gateway or several
replicas on one database: a module per slice of `ledger/store.py` on the pool of `base.py`,
composed into `PostgresStore` (`store.py`), mirroring `sqlite/` module by module."""
