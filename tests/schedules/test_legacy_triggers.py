"""The legacy workflow key `triggers: [{schedule: {cron, filters}}]` keeps compiling, and the
workflows it guards are not run by pushes, API triggers or schedules (circlet fires no cron)."""

from __future__ import annotations

from circlet.config import compile_config

CONFIG = """
version: 2.1
jobs:
  build: {docker: [{image: cimg/base:stable}], steps: [{run: echo}]}
workflows:
  commit:
    jobs: [build]
  nightly:
    triggers:
      - schedule:
          cron: "21 4 * * *"
          filters: {branches: {only: [main, /release-.*/]}}
    jobs: [build]
"""


def test_a_cron_workflow_compiles_and_is_left_out_of_what_runs() -> None:
    compiled = compile_config(CONFIG, pipeline_values={"trigger_source": "scheduled_pipeline"})
    assert [workflow.name for workflow in compiled.workflows] == ["commit", "nightly"]
    assert [graph.name for graph in compiled.graph_for("main")] == ["commit"]
    assert "21 4 * * *" in compiled.to_yaml()
