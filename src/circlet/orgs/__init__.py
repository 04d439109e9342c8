"""Organizations, their slugs and their members' roles."""
