"""The Usage, Deploy and Rollback tags of the official spec, fuzzed by schemathesis against a real
``circlet serve`` whose project ran a job that sent deploy markers through the runner protocol."""

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
  ship: {machine: true, resource_class: fuzzed/deployer, steps: [{run: echo ship}]}
workflows:
  release:
    jobs: [ship]
"""


def test_usage_deploy_and_rollback_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "fuzzed", "--user", "fuzzer")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/fuzzed/app", "--repo", str(tmp_path / "repo"))
    # A class of the organization's own, so that the server's embedded runner (local) leaves the job to us.
    live_server.admin("runner", "resource-class", "create", "fuzzed/deployer", "--org", "fuzzed")
    minted = live_server.admin("runner", "token", "create", "--resource-class", "fuzzed/deployer")
    api = httpx.Client(base_url=live_server.url + "/api/v2", headers={"Circle-Token": account["token"]})
    runner = httpx.Client(
        base_url=live_server.url + "/api/v3/runner", headers={"Authorization": f"Bearer {minted['token']}"}
    )
    api.post("/project/gh/fuzzed/app/pipeline").raise_for_status()
    deadline = time.monotonic() + 30
    task = None
    while task is None:
        assert time.monotonic() < deadline
        claimed = runner.post(
            "/claim", json={"resource_class": "fuzzed/deployer", "runner_name": "fuzz", "wait_seconds": 1}
        )
        task = claimed.json() if claimed.status_code == 200 else None
    headers = {"Authorization": f"Bearer {task['task_token']}"}
    for marker in (
        {"action": "plan", "environment_name": "prod", "component_name": "api", "target_version": "v1"},
        {"action": "update", "status": "SUCCESS"},
    ):
        runner.post(f"/tasks/{task['task_id']}/releases", json=marker, headers=headers).raise_for_status()
    project_id = api.get("/project/gh/fuzzed/app").json()["id"]
    component = api.get("/deploy/components", params={"org-id": account["org"]["id"], "page-size": 5}).json()
    environment = api.get("/deploy/environments", params={"org-id": account["org"]["id"], "page-size": 5}).json()
    export = api.post(
        f"/organizations/{account['org']['id']}/usage_export_job",
        json={"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z"},
    ).json()
    config = f"""
[parameters]
"path.org_id" = "{account["org"]["id"]}"
"query.org-id" = "{account["org"]["id"]}"
"path.project_id" = "{project_id}"
"query.project-id" = "{project_id}"
"path.component_id" = "{component["items"][0]["id"]}"
"path.environment_id" = "{environment["items"][0]["id"]}"
"query.environment-id" = "{environment["items"][0]["id"]}"
"path.usage_export_job_id" = "{export["usage_export_job_id"]}"
"""
    result = run_schemathesis(
        live_server.url,
        account["token"],
        ["Usage", "Deploy", "Rollback"],
        tmp_path,
        max_examples=15,
        config_toml=config,
        extra=["--phases", "examples,coverage,fuzzing"],
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
