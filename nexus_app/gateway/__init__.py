"""The headless gateway: OpenAI-compatible HTTP API, API keys, credit ledger and the worker
coordinator. Never imports Textual."""
