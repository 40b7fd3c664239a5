"""The SQLite implementation of the ledger store (one file in the data dir): a module per slice
of `ledger/store.py` on the connection of `base.py`, composed into `SQLiteStore` (`store.py`)."""
