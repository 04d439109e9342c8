"""`circlet serve --runner-tasks N`: the embedded runner runs N jobs at the same time, shown by the
times the jobs themselves record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.test_pipelines_e2e import setup_project

CONFIG = """
version: 2.1
executors:
  host: {machine: true}
jobs:
  record:
    executor: host
    parameters: {label: {type: string}}
    steps:
      - run: |
          date +%s.%N > "$TIMES/<< parameters.label >>.start"
          sleep 2
          date +%s.%N > "$TIMES/<< parameters.label >>.end"
workflows:
  main:
    jobs:
      - record: {name: record-a, label: a}
      - record: {name: record-b, label: b}
"""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    live.serve_options = ("--runner-tasks", "2")
    live.start()
    yield live
    live.stop()


def test_two_jobs_of_a_workflow_run_at_the_same_time(
    server: LiveServer, tmp_path: Path, shared_with_jobs: Path
) -> None:
    api, slug, _ = setup_project(server, tmp_path, CONFIG)
    times = shared_with_jobs / "times"  # where jobs, users of their own with their own /tmp, write
    times.mkdir(mode=0o777)
    times.chmod(0o777)
    api.post(f"/project/{slug}/envvar", 201, json={"name": "TIMES", "value": str(times)})
    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    assert api.settled(workflow["id"], "success", "failed")["status"] == "success", api.jobs(workflow["id"])

    def recorded(name: str) -> tuple[float, float]:
        return float((times / f"{name}.start").read_text()), float((times / f"{name}.end").read_text())

    (a_start, a_end), (b_start, b_end) = recorded("a"), recorded("b")
    assert a_start < b_end and b_start < a_end  # each began before the other ended: they overlapped
