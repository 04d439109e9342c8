"""The audit log: who did what to which resource, and when. Names only, never secret values."""
