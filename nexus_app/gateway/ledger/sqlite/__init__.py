"""The SQLite implementation of the ledger store (one file in the data dir)."""
