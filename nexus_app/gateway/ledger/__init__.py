"""The ledger: its records (`records.py`), the storage interface as one protocol per concern
(`store.py`), and the SQLite store (`sqlite/`, a module per concern)."""
