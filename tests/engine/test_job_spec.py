"""The engine's reading of compiled jobs: a shape it cannot read is the config's error, located."""

from __future__ import annotations

import pytest

from circlet.config import ConfigInvalid, JobNode, Location, compile_config
from circlet.config.loader import load_yaml
from circlet.engine.orchestrator import checked_job_spec

CONFIG = """\
version: 2.1
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    environment: [{A: true}, B=2]
    steps: [{run: {command: make, environment: {C: 1.50}}}]
workflows:
  main:
    jobs: [build]
"""


def test_a_compiled_job_becomes_a_task_spec_with_string_environments() -> None:
    compiled = compile_config(CONFIG, pipeline_values={"git.branch": "main"}, orb_dirs=[])
    [workflow] = compiled.graph_for("main")
    [node] = workflow.jobs
    spec = checked_job_spec(node, compiled.processed)
    assert spec["environment"] == {"A": "1", "B": "2"}
    assert spec["steps"][0]["environment"] == {"C": "1.50"}


def test_a_job_shape_the_engine_cannot_read_is_a_located_config_error() -> None:
    processed = {"jobs": load_yaml("build:\n  parallelism: many\n  steps: []\n", "config.yml")}
    node = JobNode("build", "build", "build", executor={"docker": [{"image": "x"}], "parallelism": "many"})
    with pytest.raises(ConfigInvalid) as raised:
        checked_job_spec(node, processed)
    [error] = raised.value.errors
    assert error.path == "jobs.build" and error.location == Location("config.yml", 2, 3)
    assert error.message.startswith("job 'build' cannot be run as compiled: ValueError")
