"""Contexts: named sets of secret environment variables shared across projects (the Context tag)."""
