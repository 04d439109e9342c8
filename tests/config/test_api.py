"""The data the pipeline engine consumes: CompiledConfig and its workflow graph."""

from __future__ import annotations

from circlet.config import JobNode, compile_config

CONFIG = """\
version: 2.1
executors:
  py:
    docker: [{image: cimg/python:3.12}]
    resource_class: large
jobs:
  test:
    executor: py
    environment: {A: "1"}
    steps: [checkout, {run: pytest}]
workflows:
  main:
    jobs:
      - test:
          context: [aws]
          serial-group: deploys
          filters: {branches: {only: main}}
      - hold: {type: approval, requires: [{test: [success, failed]}]}
  off:
    when: false
    jobs: [test]
"""


def test_workflow_graph_nodes() -> None:
    compiled = compile_config(CONFIG, orb_dirs=[])
    assert [w.name for w in compiled.workflows] == ["main"]
    assert compiled.skipped_workflows == ["off"]
    test, hold = compiled.workflows[0].jobs
    assert test == JobNode(
        name="test",
        job="test",
        type="build",
        requires={},
        context=("aws",),
        filters={"branches": {"only": "main"}},
        serial_group="deploys",
        executor={"docker": [{"image": "cimg/python:3.12"}], "resource_class": "large"},
        steps=["checkout", {"run": {"command": "pytest"}}],
        matrix=None,
    )
    assert hold == JobNode(name="hold", job=None, type="approval", requires={"test": ("success", "failed")}, context=())
    assert compiled.processed["jobs"]["test"]["environment"] == {"A": "1"}


def test_graph_for_branch_applies_filters() -> None:
    compiled = compile_config(CONFIG, orb_dirs=[])
    assert [n.name for n in compiled.graph_for(branch="main")[0].jobs] == ["test", "hold"]
    assert compiled.graph_for(branch="dev") == []
