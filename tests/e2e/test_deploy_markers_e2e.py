"""A real job's `circleci run release plan|update|log` through the agent, the runner protocol and the
server, read back with the Deploy tag; then Insights on the run the engine recorded."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveServer
from tests.e2e.test_pipelines_e2e import setup_project

CONFIG = """
version: 2.1
jobs:
  ship:
    machine: true
    steps:
      - run: circleci run release plan web-deploy --environment-name=staging --component-name=web --target-version=1.2.3
      - run: circleci run release update web-deploy --status=running
      - run: |
          circleci run release update web-deploy --status=SUCCESS
          circleci run release update web-deploy --status=FAILED
      - run: circleci run release log --target-version=0.9
workflows:
  release:
    jobs: [ship]
"""


def test_job_markers_become_versions(live_server: LiveServer, tmp_path: Path) -> None:
    api, slug, account = setup_project(live_server, tmp_path, CONFIG)
    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    assert api.settled(workflow["id"], "success", "failed")["status"] == "success", api.jobs(workflow["id"])
    org_id = account["org"]["id"]
    environments = api.get(f"/deploy/environments?org-id={org_id}&page-size=10")["items"]
    assert sorted(e["name"] for e in environments) == ["default", "staging"]
    components = {c["name"]: c for c in api.get(f"/deploy/components?org-id={org_id}&page-size=10")["items"]}
    assert sorted(components) == ["app", "web"]  # `log` without a component: named after the project
    staging = next(e for e in environments if e["name"] == "staging")
    versions = api.get(f"/deploy/components/{components['web']['id']}/versions?environment-id={staging['id']}")
    [version] = versions["items"]
    assert version["name"] == "1.2.3" and version["is_live"] and version["workflow_id"] == workflow["id"]
    job = api.jobs(workflow["id"])["ship"]
    assert version["job_number"] == job["job_number"]
    steps = api.get(f"/project/{slug}/job/{job['job_number']}")
    assert steps["name"] == "ship"
    runs = api.get(f"/insights/{slug}/workflows/release")["items"]
    assert [run["id"] for run in runs] == [workflow["id"]] and runs[0]["status"] == "success"
    metrics = api.get(f"/insights/{slug}/workflows?reporting-window=last-24-hours")["items"]
    assert [(m["name"], m["metrics"]["total_runs"], m["metrics"]["success_rate"]) for m in metrics] == [
        ("release", 1, 1.0)
    ]
    assert metrics[0]["metrics"]["duration_metrics"]["max"] == runs[0]["duration"]
