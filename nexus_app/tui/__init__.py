"""The terminal app (Textual): screens, actions, and the local network it can run."""
