"""The Insights tag of the official spec, fuzzed by schemathesis against a real ``circlet serve`` whose
project has run a pipeline through the engine (its embedded runner), so the figures are not empty."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conformance.spec import run_schemathesis
from tests.conftest import LiveServer
from tests.pipelines.helpers import make_repo

CONFIG = """
version: 2.1
jobs:
  build: {docker: [{image: x}], steps: [{run: echo build}]}
workflows:
  main:
    jobs: [build]
"""


def test_insights_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "fuzzed", "--user", "fuzzer")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/fuzzed/app", "--repo", str(tmp_path / "repo"))
    api = httpx.Client(base_url=live_server.url + "/api/v2", headers={"Circle-Token": account["token"]})
    pipeline = api.post("/project/gh/fuzzed/app/pipeline").json()
    deadline = time.monotonic() + 60
    while not (workflows := api.get(f"/pipeline/{pipeline['id']}/workflow").json()["items"]) or workflows[0][
        "status"
    ] in ("running", "on_hold"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    runs = api.get("/insights/gh/fuzzed/app/workflows/main").json()["items"]
    assert [run["status"] for run in runs] == [workflows[0]["status"]]
    config = """
[parameters]
"path.project-slug" = "gh/fuzzed/app"
"path.org-slug" = "gh/fuzzed"
"path.workflow-name" = "main"
"""
    result = run_schemathesis(
        live_server.url,
        account["token"],
        ["Insights"],
        tmp_path,
        max_examples=15,
        config_toml=config,
        extra=["--phases", "examples,coverage,fuzzing"],
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
