"""The Pipeline, Workflow, Job, Pipeline Definition and Trigger tags of the official spec, fuzzed by
schemathesis against a real ``circlet serve`` (with its embedded runner) and a project whose
repository the test made."""

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
    jobs: [build, {hold: {type: approval, requires: [build]}}]
"""


def test_pipeline_workflow_and_job_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "fuzzed", "--user", "fuzzer")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/fuzzed/app", "--repo", str(tmp_path / "repo"))
    api = httpx.Client(base_url=live_server.url + "/api/v2", headers={"Circle-Token": account["token"]})
    pipeline = api.post("/project/gh/fuzzed/app/pipeline").json()
    deadline = time.monotonic() + 30
    while not (workflows := api.get(f"/pipeline/{pipeline['id']}/workflow").json()["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    while (hold := api.get(f"/workflow/{workflows[0]['id']}/job").json()["items"][1])["status"] != "on_hold":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    jobs = api.get(f"/workflow/{workflows[0]['id']}/job").json()["items"]
    build = next(job for job in jobs if job["type"] == "build")
    project_id = api.get("/project/gh/fuzzed/app").json()["id"]
    definition = api.get(f"/projects/{project_id}/pipeline-definitions").json()["items"][0]
    trigger = api.post(
        f"/projects/{project_id}/pipeline-definitions/{definition['id']}/triggers",
        json={"event_name": "seeded", "event_source": {"provider": "webhook"}},
    ).json()
    # Real identifiers, so that generated requests reach the code behind the 404s.
    config = f"""
[parameters]
"path.project-slug" = "gh/fuzzed/app"
"path.provider" = "gh"
"path.organization" = "fuzzed"
"path.project" = "app"
"path.pipeline-id" = "{pipeline["id"]}"
"path.pipeline-number" = "1"
"path.id" = "{workflows[0]["id"]}"
"path.approval_request_id" = "{hold["approval_request_id"]}"
"path.job-number" = "{build["job_number"]}"
"path.job-id" = "{build["id"]}"
"query.org-slug" = "gh/fuzzed"
"path.project_id" = "{project_id}"
"path.pipeline_definition_id" = "{definition["id"]}"
"path.trigger_id" = "{trigger["id"]}"
"""
    # No stateful phase: the spec's links for these tags name parameters that do not exist
    # (`project_slug` for `{project-slug}`, a `page-token` on listWorkflowJobs' own link).
    result = run_schemathesis(
        live_server.url,
        account["token"],
        ["Pipeline", "Workflow", "Job", "Pipeline Definition", "Trigger"],
        tmp_path,
        max_examples=15,
        config_toml=config,
        extra=["--phases", "examples,coverage,fuzzing"],
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
