"""The OpenAI-compatible API: chat completions, completions and embeddings, responses, with
the shapes they share and the relay of a job's events to the client."""
