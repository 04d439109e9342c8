"""The pipeline engine: state machines, DAG progression and the task queue."""
