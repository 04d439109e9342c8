"""Storage steps end to end, with a real `circlet serve` and its embedded runner: a cache saved by one
pipeline and restored by the next, a workspace passed down three jobs, an artifact downloaded and JUnit
results listed through the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.test_pipelines_e2e import setup_project
from tests.pipelines.helpers import commit

CONFIG = """
version: 2.1
executors:
  host: {docker: [{image: cimg/base:stable}]}
jobs:
  first:
    executor: host
    steps:
      - checkout
      - restore_cache: {keys: ['v1-deps-{{ .Branch }}-', v1-other]}
      - run: |
          mkdir -p deps
          test -f deps/value.txt || printf 'made by pipeline %s\\n' "$CIRCLE_PIPELINE_NUMBER" > deps/value.txt
      - save_cache: {key: 'v1-deps-{{ .Branch }}-{{ checksum "lock.txt" }}', paths: [deps]}
      - store_artifacts: {path: deps/value.txt, destination: value.txt}
      - persist_to_workspace: {root: ., paths: [deps]}
  second:
    executor: host
    steps:
      - attach_workspace: {at: ws}
      - run: mkdir -p out && cat ws/deps/value.txt > out/second.txt
      - persist_to_workspace: {root: ., paths: [out]}
  third:
    executor: host
    steps:
      - checkout
      - attach_workspace: {at: ws}
      - run: |
          mkdir -p results/pytest reports
          cat ws/deps/value.txt ws/out/second.txt > reports/both.txt
          cp junit.xml results/pytest/r.xml
          printf 'not xml' > results/broken.xml
      - store_test_results: {path: results}
      - store_artifacts: {path: reports}
workflows:
  main:
    jobs: [first, {second: {requires: [first]}}, {third: {requires: [second]}}]
"""
JUNIT = """<?xml version="1.0"?>
<testsuite>
  <testcase classname="t.a" name="ok" file="t/a.py" time="1.5"/>
  <testcase classname="t.a" name="bad" time="0.25"><failure message="m">boom</failure></testcase>
</testsuite>
"""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    live.start()
    yield live
    live.stop()


def test_cache_workspace_artifacts_and_tests(server: LiveServer, tmp_path: Path) -> None:
    api, slug, _ = setup_project(server, tmp_path, CONFIG)
    commit(tmp_path / "repo", {"lock.txt": "lock\n", "junit.xml": JUNIT})
    numbers = []
    for _ in range(2):
        pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
        [workflow] = api.workflows(pipeline["id"])
        assert api.settled(workflow["id"], "success", "failed")["status"] == "success", api.jobs(workflow["id"])
        numbers.append({name: job["job_number"] for name, job in api.jobs(workflow["id"]).items()})

    # The second pipeline restored the first one's cache: the file is the one pipeline 1 made.
    for run in numbers:
        listing = api.get(f"/project/{slug}/{run['first']}/artifacts")
        assert [(a["path"], a["node_index"]) for a in listing["items"]] == [("value.txt", 0)]
        download = api.http.get(listing["items"][0]["url"])
        assert download.status_code == 200
        assert download.content == b"made by pipeline 1\n"

    # The workspace went down the chain: third saw the layers of first and second.
    third = api.get(f"/project/{slug}/{numbers[1]['third']}/artifacts")["items"]
    assert [a["path"] for a in third] == ["reports/both.txt"]
    assert api.http.get(third[0]["url"]).content == b"made by pipeline 1\nmade by pipeline 1\n"

    tests = api.get(f"/project/{slug}/{numbers[1]['third']}/tests")
    assert tests["next_page_token"] is None
    assert tests["items"] == [
        {
            "message": None,
            "source": "pytest",
            "run_time": 1.5,
            "file": "t/a.py",
            "result": "success",
            "name": "ok",
            "classname": "t.a",
        },
        {
            "message": "boom",
            "source": "pytest",
            "run_time": 0.25,
            "file": None,
            "result": "failure",
            "name": "bad",
            "classname": "t.a",
        },
    ]

    # Artifacts are for those who may see the project.
    outsider = server.admin("bootstrap", "--org", "other", "--user", "mallory")
    denied = api.http.get(third[0]["url"], headers={"Circle-Token": outsider["token"]})
    assert denied.status_code == 404 and "message" in denied.json()


VENV_CONFIG = """
version: 2.1
jobs:
  save:
    machine: true
    steps:
      - run: |
          python3 -m venv --without-pip .venv
          mkdir -p {outside}/lib && echo dep > {outside}/lib/d
      - save_cache: {{key: 'venv-v1', paths: [.venv, {outside}]}}
      - run: rm -rf .venv {outside}
  restore:
    machine: true
    steps:
      - restore_cache: {{keys: [venv-]}}
      - run: |
          test -L .venv/bin/python3
          .venv/bin/python -c 'import sys; assert sys.prefix != sys.base_prefix, sys.prefix'
          test "$(cat {outside}/lib/d)" = dep
workflows:
  main:
    jobs: [save, {{restore: {{requires: [save]}}}}]
"""


def test_a_python_venv_and_an_absolute_path_round_trip(
    server: LiveServer, tmp_path: Path, shared_with_jobs: Path
) -> None:
    """A cached venv (its absolute interpreter link) and a path outside the home restore and work.
    The path is one the job's user may write and the test can read (not under a /tmp of the job's own)."""
    outside = shared_with_jobs / "opt-deps"
    api, slug, _ = setup_project(server, tmp_path, VENV_CONFIG.format(outside=outside))
    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    assert api.settled(workflow["id"], "success", "failed")["status"] == "success", api.jobs(workflow["id"])
    assert (outside / "lib" / "d").read_text() == "dep\n"  # put back by the restore job
