"""The DAG end to end through the public API, with the test playing the runner over HTTP:
fan-out and fan-in, a matrix, an approval, a failing job and its not_run dependants, contexts
with restrictions, cancel, rerun from failed, setup workflows with continuation, lease loss."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import Database
from circlet.settings import Settings
from tests.conftest import Account, app_client
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token, wait_for

DAG = """
version: 2.1
executors:
  e: {docker: [{image: cimg/base:stable}]}
jobs:
  build: {executor: e, steps: [{run: echo build}]}
  unit:
    executor: e
    parameters: {v: {type: string}}
    steps: [{run: "echo << parameters.v >>"}]
  lint: {executor: e, steps: [{run: lint}]}
  bad: {executor: e, steps: [{run: exit 1}]}
  after-bad: {executor: e, steps: [{run: echo never}]}
  cleanup: {executor: e, steps: [{run: echo cleanup}]}
  deploy: {executor: e, steps: [{run: echo deploy}]}
  secret: {executor: e, environment: {FROM_JOB: job}, steps: [{run: echo secret}]}
  denied: {executor: e, steps: [{run: echo denied}]}
workflows:
  main:
    jobs:
      - build
      - unit: {requires: [build], matrix: {parameters: {v: ["1", "2"]}}}
      - lint: {requires: [build]}
      - bad: {requires: [build]}
      - after-bad: {requires: [bad]}
      - cleanup: {requires: [{bad: [failed]}]}
      - hold: {type: approval, requires: [unit, lint]}
      - deploy: {requires: [hold]}
      - secret: {requires: [build], context: [allowed]}
      - denied: {context: [release-only]}
"""


async def jobs_of(http: httpx.AsyncClient, account: Account, workflow_id: str) -> dict[str, dict[str, Any]]:
    items = (await http.get(f"/api/v2/workflow/{workflow_id}/job", headers=account.headers)).json()["items"]
    return {job["name"]: job for job in items}


async def workflows_of(http: httpx.AsyncClient, account: Account, pipeline_id: str) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        response = await http.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=account.headers)
        return response.json()["items"] or None

    result: list[dict[str, Any]] = await wait_for(listed)
    return result


async def trigger(http: httpx.AsyncClient, account: Account, slug: str, **body: Any) -> str:
    response = await http.post(f"/api/v2/project/{slug}/pipeline", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def make_context(http: httpx.AsyncClient, account: Account, name: str, value: str) -> str:
    created = await http.post(
        "/api/v2/context", json={"name": name, "owner": {"id": account.org_id}}, headers=account.headers
    )
    context_id = str(created.json()["id"])
    await http.put(
        f"/api/v2/context/{context_id}/environment-variable/SECRET_{name.upper().replace('-', '_')}",
        json={"value": value},
        headers=account.headers,
    )
    return context_id


async def test_fan_out_fan_in_matrix_approval_not_run_contexts_and_rerun(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": DAG})
    slug = await make_project(database, admin, tmp_path / "repo")
    project_id = (await client.get(f"/api/v2/project/{slug}", headers=admin.headers)).json()["id"]
    allowed = await make_context(client, admin, "allowed", "s3cr3t-allowed")
    restricted = await make_context(client, admin, "release-only", "s3cr3t-release")
    for context_id, kind, value in (
        (allowed, "project", project_id),
        (restricted, "expression", 'pipeline.git.branch == "release"'),
    ):
        response = await client.post(
            f"/api/v2/context/{context_id}/restrictions",
            json={"restriction_type": kind, "restriction_value": value},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
    await client.post(
        f"/api/v2/project/{slug}/envvar", json={"name": "PROJECT_VAR", "value": "from-project"}, headers=admin.headers
    )
    runner = ProtocolRunner(client, await runner_token(database))

    pipeline_id = await trigger(client, admin, slug)
    [workflow] = await workflows_of(client, admin, pipeline_id)
    tasks = await runner.run_all({"bad": "failed"})
    names = [task["job"]["name"] for task in tasks]
    assert names[0] == "build" and sorted(names[1:]) == ["bad", "cleanup", "lint", "secret", "unit-1", "unit-2"]
    secret = next(task for task in tasks if task["job"]["name"] == "secret")
    assert secret["environment"]["SECRET_ALLOWED"] == "s3cr3t-allowed"
    assert secret["environment"]["PROJECT_VAR"] == "from-project" and secret["environment"]["FROM_JOB"] == "job"
    assert set(secret["secrets"]) == {"s3cr3t-allowed", "from-project"}
    assert all("SECRET_RELEASE_ONLY" not in task["environment"] for task in tasks)

    jobs = await jobs_of(client, admin, workflow["id"])
    statuses = {name: job["status"] for name, job in jobs.items()}
    assert statuses == {
        "build": "success",
        "unit-1": "success",
        "unit-2": "success",
        "lint": "success",
        "bad": "failed",
        "after-bad": "not_run",
        "cleanup": "success",
        "hold": "on_hold",
        "deploy": "blocked",
        "secret": "success",
        "denied": "unauthorized",
    }
    assert sorted(jobs["hold"]["dependencies"]) == sorted(jobs[n]["id"] for n in ("unit-1", "unit-2", "lint"))
    body = (await client.get(f"/api/v2/workflow/{workflow['id']}", headers=admin.headers)).json()
    assert body["status"] == "failing"
    details = (
        await client.get(f"/api/v2/project/{slug}/job/{jobs['denied']['job_number']}", headers=admin.headers)
    ).json()
    assert details["status"] == "unauthorized" and details["contexts"] == [{"name": "release-only"}]
    assert "restricted" in details["messages"][0]["message"]

    approve = await client.post(
        f"/api/v2/workflow/{workflow['id']}/approve/{jobs['hold']['approval_request_id']}", headers=admin.headers
    )
    assert approve.status_code == 202 and approve.json() == {"message": "Accepted."}
    assert [t["job"]["name"] for t in await runner.run_all()] == ["deploy"]
    body = (await client.get(f"/api/v2/workflow/{workflow['id']}", headers=admin.headers)).json()
    assert body["status"] == "failed" and body["stopped_at"]

    rerun = await client.post(
        f"/api/v2/workflow/{workflow['id']}/rerun", json={"from_failed": True}, headers=admin.headers
    )
    assert rerun.status_code == 202, rerun.text
    new_id = rerun.json()["workflow_id"]
    assert sorted(t["job"]["name"] for t in await runner.run_all()) == ["after-bad", "bad"]
    again = await jobs_of(client, admin, new_id)
    assert {n: j["status"] for n, j in again.items()} == {
        **statuses,
        "bad": "success",
        "after-bad": "success",
        "cleanup": "not_run",
        "hold": "success",
        "deploy": "success",
    }
    assert again["build"]["job_number"] == jobs["build"]["job_number"]
    assert again["bad"]["job_number"] > jobs["deploy"]["job_number"]
    body = (await client.get(f"/api/v2/workflow/{new_id}", headers=admin.headers)).json()
    assert body["status"] == "unauthorized" and body["name"] == "main"
    assert len(await workflows_of(client, admin, pipeline_id)) == 2


SINGLE = """
version: 2.1
jobs:
  slow: {docker: [{image: x}], steps: [{run: sleep 30}]}
  later: {docker: [{image: x}], steps: [{run: echo later}]}
workflows:
  main:
    jobs: [slow, {later: {requires: [slow]}}]
"""


async def test_cancel_running_and_queued(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": SINGLE})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    pipeline_id = await trigger(client, admin, slug)
    [workflow] = await workflows_of(client, admin, pipeline_id)
    task = await runner.claim(wait=5)
    assert task is not None
    beat = await runner.call(task, "heartbeat", json={})
    assert beat.json() == {"lease_seconds": 60, "cancel": False}

    canceled = await client.post(f"/api/v2/workflow/{workflow['id']}/cancel", headers=admin.headers)
    assert canceled.status_code == 202 and canceled.json() == {"message": "Accepted."}
    assert (await runner.call(task, "heartbeat", json={})).json()["cancel"] is True
    assert (await runner.call(task, "complete", json={"status": "canceled"})).status_code == 200
    jobs = await jobs_of(client, admin, workflow["id"])
    assert {n: j["status"] for n, j in jobs.items()} == {"slow": "canceled", "later": "canceled"}
    body = (await client.get(f"/api/v2/workflow/{workflow['id']}", headers=admin.headers)).json()
    assert body["status"] == "canceled" and body["canceled_by"] == admin.user_id
    late = await runner.call(task, "heartbeat", json={})
    assert late.status_code == 409

    # A queued job, canceled by number, never reaches a runner.
    second = await trigger(client, admin, slug)
    [workflow] = await workflows_of(client, admin, second)
    number = (await jobs_of(client, admin, workflow["id"]))["slow"]["job_number"]
    response = await client.post(f"/api/v2/project/{slug}/job/{number}/cancel", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert await runner.claim() is None
    jobs = await jobs_of(client, admin, workflow["id"])
    assert {n: j["status"] for n, j in jobs.items()} == {"slow": "canceled", "later": "not_run"}
    # A job that never ran was never queued: no queued_at, where the queued one has its time.
    details = {
        name: (await client.get(f"/api/v2/project/{slug}/job/{job['job_number']}", headers=admin.headers)).json()
        for name, job in jobs.items()
    }
    assert details["later"]["status"] == "not_run" and details["later"]["queued_at"] is None
    assert details["slow"]["queued_at"] is not None


SETUP = """
version: 2.1
setup: true
jobs:
  generate: {docker: [{image: x}], steps: [{run: echo generate}]}
workflows:
  setup:
    jobs: [generate]
"""
CONTINUED = """
version: 2.1
parameters:
  target: {type: string, default: none}
jobs:
  deploy: {docker: [{image: x}], steps: [{run: "echo << pipeline.parameters.target >>"}]}
workflows:
  generated:
    jobs: [deploy]
"""


async def test_setup_workflow_and_continuation(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": SETUP})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    pipeline_id = await trigger(client, admin, slug)
    [setup] = await workflows_of(client, admin, pipeline_id)
    assert setup["tag"] == "setup"
    task = await runner.claim(wait=5)
    assert task is not None
    key = task["environment"]["CIRCLE_CONTINUATION_KEY"]
    assert key in task["secrets"]
    body = {"continuation-key": key, "configuration": CONTINUED, "parameters": {"target": "prod"}}
    bad = await client.post("/api/v2/pipeline/continue", json={**body, "configuration": "version: 2.1\njobs: 3\n"})
    assert bad.status_code == 400 and "invalid" in bad.json()["message"]
    response = await client.post("/api/v2/pipeline/continue", json=body)
    assert response.status_code == 200 and response.json() == {"message": "Pipeline continued."}
    assert (await client.post("/api/v2/pipeline/continue", json=body)).status_code == 400
    await runner.finish(task)
    [continued] = [t for t in await runner.run_all()]
    assert continued["steps"][0]["command"] == "echo prod"
    workflows = await workflows_of(client, admin, pipeline_id)
    assert [(w["name"], w["status"]) for w in workflows] == [("setup", "success"), ("generated", "success")]
    config = (await client.get(f"/api/v2/pipeline/{pipeline_id}/config", headers=admin.headers)).json()
    assert config["setup-config"] == SETUP and config["source"] == CONTINUED
    pipeline = (await client.get(f"/api/v2/pipeline/{pipeline_id}", headers=admin.headers)).json()
    assert pipeline["state"] == "created"


@pytest.fixture
async def short_lease_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"runner_lease_seconds": 1})) as http:
        yield http


async def test_a_lost_lease_fails_the_job_as_infrastructure_fail(
    short_lease_client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    client = short_lease_client
    make_repo(tmp_path / "repo", {".circleci/config.yml": SINGLE})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    pipeline_id = await trigger(client, admin, slug)
    [workflow] = await workflows_of(client, admin, pipeline_id)
    task = await runner.claim(wait=5)
    assert task is not None and task["lease_seconds"] == 1

    async def reaped() -> bool:
        return (await jobs_of(client, admin, workflow["id"]))["slow"]["status"] == "infrastructure_fail"

    await wait_for(reaped, timeout=10)
    late = await runner.call(task, "heartbeat", json={})
    assert late.status_code == 409 and late.json() == {"message": "task lease expired"}
    jobs = await jobs_of(client, admin, workflow["id"])
    assert jobs["later"]["status"] == "not_run"
    assert (await client.get(f"/api/v2/workflow/{workflow['id']}", headers=admin.headers)).json()["status"] == "failed"


AUTO = """
version: 2.1
jobs:
  flaky: {docker: [{image: x}], steps: [{run: ./flaky}]}
workflows:
  main:
    max_auto_reruns: 2
    jobs: [flaky]
"""


async def test_a_failed_workflow_reruns_itself_up_to_max_auto_reruns(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": AUTO})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    pipeline_id = await trigger(client, admin, slug)
    await workflows_of(client, admin, pipeline_id)
    assert len(await runner.run_all({"flaky": "failed"})) == 3  # the first run and two reruns
    workflows = (await client.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=admin.headers)).json()
    assert [(w["status"], w["auto_rerun_number"], w["max_auto_reruns"]) for w in workflows["items"]] == [
        ("failed", 0, 2),
        ("failed", 1, 2),
        ("failed", 2, 2),
    ]

    second = await trigger(client, admin, slug)
    await workflows_of(client, admin, second)
    outcomes = iter(["failed", "success"])
    while (task := await runner.claim(wait=0.5)) is not None:
        await runner.finish(task, next(outcomes))
    workflows = (await client.get(f"/api/v2/pipeline/{second}/workflow", headers=admin.headers)).json()
    assert [(w["status"], w["auto_rerun_number"]) for w in workflows["items"]] == [("failed", 0), ("success", 1)]
