"""Async HTTP clients: the NEXUS gateway's account and network endpoints (`gateway`), and
streaming chat with any OpenAI-compatible server (`chat`)."""
