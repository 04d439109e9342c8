"""Caches, workspace layers, artifacts and test results of jobs (the runners storage steps)."""
