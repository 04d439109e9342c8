"""The Insights tag: figures of workflow, job and test runs, computed from the run tables."""
