"""The ledger: its records and the storage interface (`store.py`), and the SQLite store."""
