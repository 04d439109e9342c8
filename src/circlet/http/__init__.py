"""Shared HTTP machinery: errors, auth, pagination, rate limits, the request middleware."""
