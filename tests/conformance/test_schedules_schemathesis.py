"""The Schedule tag of the official spec, fuzzed by schemathesis against a real ``circlet serve`` and
a project whose repository the test made, with a seeded schedule."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conformance.spec import run_schemathesis
from tests.conftest import LiveServer
from tests.pipelines.helpers import make_repo

CONFIG = (
    "version: 2.1\njobs: {build: {docker: [{image: x}], steps: [{run: 'true'}]}}\nworkflows: {main: {jobs: [build]}}\n"
)


def test_schedule_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "fuzzed", "--user", "fuzzer")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/fuzzed/app", "--repo", str(tmp_path / "repo"))
    api = httpx.Client(base_url=live_server.url + "/api/v2", headers={"Circle-Token": account["token"]})
    schedule = api.post(
        "/project/gh/fuzzed/app/schedule",
        json={
            "name": "seeded",
            "timetable": {"per-hour": 1, "hours-of-day": [3], "days-of-week": ["MON"]},
            "attribution-actor": "current",
            "parameters": {"branch": "main"},
        },
    )
    assert schedule.status_code == 201, schedule.text
    # Real identifiers, so that generated requests reach the code behind the 404s.
    config = f"""
[parameters]
"path.project-slug" = "gh/fuzzed/app"
"path.schedule-id" = "{schedule.json()["id"]}"
"""
    result = run_schemathesis(
        live_server.url,
        account["token"],
        ["Schedule"],
        tmp_path,
        max_examples=30,
        config_toml=config,
        extra=["--phases", "examples,coverage,fuzzing"],
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
