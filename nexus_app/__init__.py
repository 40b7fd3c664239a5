"""NEXUS: chat client, GPU worker and OpenAI-compatible gateway in one program."""

__version__ = "0.1.0"
