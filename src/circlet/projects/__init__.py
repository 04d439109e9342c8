"""Projects: where code lives and how it is built (the Project tag)."""
