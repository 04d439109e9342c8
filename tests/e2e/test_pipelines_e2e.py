"""Pipelines end to end: a git repository made by the test, a real `circlet serve` with its
embedded runner, a separate `circlet runner` process, and statuses asserted through the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, free_port, reachable_by_jobs, server_env
from tests.e2e.helpers import Api
from tests.pipelines.helpers import make_repo

CONFIG = """
version: 2.1
setup: << pipeline.parameters.setup >>
parameters:
  setup: {type: boolean, default: false}
executors:
  host: {docker: [{image: cimg/base:stable}]}
jobs:
  build:
    executor: host
    steps: [checkout, {run: test -f .circleci/config.yml && echo built > ../built.txt}]
  unit:
    executor: host
    parameters: {n: {type: string}}
    steps: [{run: "echo unit << parameters.n >>"}]
  bad:
    executor: host
    steps: [{run: 'test -f "$MARKER" || exit 3'}]
  after-bad: {executor: host, steps: [{run: echo after}]}
  ship:
    executor: host
    steps:
      - run: 'echo "token: $SHIP_TOKEN"'
      - run: 'test "$(printf %s "$SHIP_TOKEN" | sha256sum | cut -c1-12)" = 1b8df0c4be3b'
  release: {executor: host, steps: [{run: echo release}]}
  generate:
    executor: host
    steps:
      - checkout
      - run: |
          python3 - <<'PY'
          import json, os, urllib.request
          body = {"continuation-key": os.environ["CIRCLE_CONTINUATION_KEY"],
                  "configuration": open(".circleci/continued.yml").read()}
          request = urllib.request.Request(os.environ["SERVER"] + "/api/v2/pipeline/continue",
              data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
          print(urllib.request.urlopen(request).read().decode())
          PY
workflows:
  main:
    when: {not: << pipeline.parameters.setup >>}
    jobs:
      - build
      - unit: {requires: [build], matrix: {parameters: {n: ["1", "2"]}}}
      - bad: {requires: [build]}
      - after-bad: {requires: [bad]}
      - hold: {type: approval, requires: [unit]}
      - ship: {requires: [hold], context: [shipping]}
      - release: {requires: [hold], context: [release-branch-only]}
  setup:
    when: << pipeline.parameters.setup >>
    jobs: [generate]
"""
CONTINUED = """
version: 2.1
jobs:
  continued: {docker: [{image: x}], steps: [{run: echo continued}]}
workflows:
  after-setup:
    jobs: [continued]
"""
SLOW = """
version: 2.1
jobs:
  slow:
    docker: [{image: x}]
    resource_class: e2e/slow
    steps: [{run: sleep 60}]
workflows:
  main:
    jobs: [slow]
"""


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    env = server_env(home, database_url, CIRCLET_RUNNER_LEASE_SECONDS="3")
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, env)
    live.start()
    yield live
    live.stop()


def setup_project(server: LiveServer, tmp_path: Path, config: str) -> tuple[Api, str, dict[str, Any]]:
    account = server.admin("bootstrap", "--org", "e2e", "--user", "alice")
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": config, ".circleci/continued.yml": CONTINUED})
    server.admin("project", "create", "gh/e2e/app", "--repo", str(repo))
    return Api(server.url, account["token"]), "gh/e2e/app", account


def test_dag_contexts_approval_rerun_and_setup(server: LiveServer, tmp_path: Path, shared_with_jobs: Path) -> None:
    api, slug, account = setup_project(server, tmp_path, CONFIG)
    project = api.get(f"/project/{slug}")
    for name, value, restriction in (
        ("shipping", "ship-s3cret", ("project", project["id"])),
        ("release-branch-only", "nope", ("expression", 'pipeline.git.branch == "release"')),
    ):
        context = api.post("/context", 200, json={"name": name, "owner": {"id": account["org"]["id"]}})
        api.http.put(f"/context/{context['id']}/environment-variable/SHIP_TOKEN", json={"value": value})
        kind, target = restriction
        api.post(
            f"/context/{context['id']}/restrictions", 201, json={"restriction_type": kind, "restriction_value": target}
        )

    marker = shared_with_jobs / "marker"  # where the job, another user with a /tmp of its own, sees it
    api.post(f"/project/{slug}/envvar", 201, json={"name": "MARKER", "value": str(marker)})
    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    api.until(
        lambda: (
            api.jobs(workflow["id"])["hold"]["status"] == "on_hold"
            and api.jobs(workflow["id"])["after-bad"]["status"] == "not_run"
        )
    )
    jobs = api.jobs(workflow["id"])
    assert {n: j["status"] for n, j in jobs.items()} == {
        "build": "success",
        "unit-1": "success",
        "unit-2": "success",
        "bad": "failed",
        "after-bad": "not_run",
        "hold": "on_hold",
        "ship": "blocked",
        "release": "blocked",
    }
    assert api.get(f"/workflow/{workflow['id']}")["status"] == "failing"
    api.post(f"/workflow/{workflow['id']}/approve/{jobs['hold']['approval_request_id']}", 202)
    api.settled(workflow["id"], "failed")
    jobs = api.jobs(workflow["id"])
    assert (jobs["ship"]["status"], jobs["release"]["status"]) == ("success", "unauthorized")

    marker.touch()  # now `bad` succeeds
    rerun = api.post(f"/workflow/{workflow['id']}/rerun", 202, json={"from_failed": True})
    api.settled(rerun["workflow_id"], "unauthorized")
    again = api.jobs(rerun["workflow_id"])
    assert {n: j["status"] for n, j in again.items()} == {
        **{n: j["status"] for n, j in jobs.items()},
        "bad": "success",
        "after-bad": "success",
    }
    assert again["build"]["job_number"] == jobs["build"]["job_number"]

    api.http.post(f"/project/{slug}/envvar", json={"name": "SERVER", "value": server.url})
    setup = api.post(f"/project/{slug}/pipeline", 201, json={"parameters": {"setup": True}})
    workflows = api.workflows(setup["id"], 2)
    assert [w["name"] for w in workflows] == ["setup", "after-setup"]
    api.settled(workflows[1]["id"], "success")
    api.settled(workflows[0]["id"], "success")
    assert api.get(f"/pipeline/{setup['id']}/config")["source"] == CONTINUED
    # The context's secret reached the job (its hash matched) and nothing else: not the server's
    # log (the runner's lines included), not a response.
    assert server.log_path is not None and "ship-s3cret" not in server.log_path.read_text()
    assert "ship-s3cret" not in api.http.get(f"/project/{slug}/job/{jobs['ship']['job_number']}").text


def test_cancel_during_sleep_and_a_runner_killed_mid_job(server: LiveServer, tmp_path: Path) -> None:
    api, slug, _ = setup_project(server, tmp_path, SLOW)
    server.admin("runner", "resource-class", "create", "e2e/slow", "--org", "e2e")
    minted = server.admin("runner", "token", "create", "--resource-class", "e2e/slow")
    pipeline = api.post(f"/project/{slug}/pipeline", 201)
    [workflow] = api.workflows(pipeline["id"])
    details = api.until(lambda: (d := api.get(f"/project/{slug}/job/1"))["messages"] and d)
    assert "No runner of resource class e2e/slow" in details["messages"][0]["message"]

    def start_runner() -> subprocess.Popen[bytes]:
        env = {**os.environ, "CIRCLET_RUNNER_TOKEN": minted["token"]}
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "circlet.agent",
                "--url",
                server.url,
                "--resource-class",
                "e2e/slow",
                "--work-dir",
                str(reachable_by_jobs(tmp_path / "work")),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    runner = start_runner()
    try:
        api.until(lambda: api.jobs(workflow["id"])["slow"]["status"] == "running")
        time.sleep(0.5)
        started = time.monotonic()
        api.post(f"/workflow/{workflow['id']}/cancel", 202)
        api.until(lambda: api.jobs(workflow["id"])["slow"]["status"] == "canceled", timeout=15)
        assert time.monotonic() - started < 10
        assert api.get(f"/workflow/{workflow['id']}")["status"] == "canceled"

        second = api.post(f"/project/{slug}/pipeline", 201)
        [workflow] = api.workflows(second["id"])
        api.until(lambda: api.jobs(workflow["id"])["slow"]["status"] == "running")
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        api.until(lambda: api.jobs(workflow["id"])["slow"]["status"] == "infrastructure_fail", timeout=20)
        assert api.get(f"/workflow/{workflow['id']}")["status"] == "failed"
        number = api.jobs(workflow["id"])["slow"]["job_number"]
        assert "lease" in api.get(f"/project/{slug}/job/{number}")["messages"][0]["message"]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
