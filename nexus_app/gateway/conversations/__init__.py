"""Conversations the gateway keeps but cannot read: turns sealed under a key derived from the
caller's API key (`crypto.py`), the history of a `userid` and stored Responses on top of the
ledger's `ConversationStore` (`history.py`)."""
