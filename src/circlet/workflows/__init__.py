"""Workflows: reading them and their jobs, approving, canceling, rerunning."""
