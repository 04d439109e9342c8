"""Users and their personal API tokens (the spec's User tag)."""
