"""Load, faults and hostile input, with the ledger checked after each."""
