"""Async HTTP clients: the NEXUS gateway's account endpoints (and, later, any OpenAI-compatible
server for chat)."""
