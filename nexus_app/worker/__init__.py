"""The worker node: serves GGUF models to a gateway."""
