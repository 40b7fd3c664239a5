"""The routes: one module per resource, the OpenAI-compatible API in `openai/`, and the worker
socket endpoint."""
