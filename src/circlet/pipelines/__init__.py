"""Pipelines: triggering, the git mirror, pipeline definitions and triggers, and the read operations."""
