"""Triggering: the mirror, refs, compile errors, numbers, and a pipeline run to its end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from circlet.db.engine import Database
from tests.conftest import Account
from tests.pipelines.helpers import ProtocolRunner, commit, git, make_project, make_repo, runner_token, wait_for

CONFIG = """
version: 2.1
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    steps: [checkout, {run: echo build}]
  test:
    docker: [{image: cimg/base:stable}]
    environment: {LEVEL: job}
    steps: [{run: echo test}]
workflows:
  main:
    jobs: [build, {test: {requires: [build]}}]
"""


async def pipeline_settled(http: httpx.AsyncClient, account: Account, pipeline_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await http.get(f"/api/v2/pipeline/{pipeline_id}", headers=account.headers)).json()
        return body if body["state"] != "pending" else None

    result: dict[str, Any] = await wait_for(done)
    return result


async def workflow_done(http: httpx.AsyncClient, account: Account, pipeline_id: str) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        items = (await http.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=account.headers)).json()["items"]
        return items if items and all(w["status"] not in ("running", "on_hold", "failing") for w in items) else None

    result: list[dict[str, Any]] = await wait_for(done)
    return result


async def test_trigger_runs_a_pipeline_to_success(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    sha = make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))

    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": "main"}, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"id", "state", "number", "created_at"} and created["number"] == 1
    pipeline = await pipeline_settled(client, admin, created["id"])
    assert pipeline["state"] == "created", pipeline
    assert pipeline["vcs"]["revision"] == sha and pipeline["vcs"]["branch"] == "main"

    tasks = await runner.run_all()
    assert [t["job"]["name"] for t in tasks] == ["build", "test"]
    build = tasks[0]
    assert build["checkout"]["revision"] == sha and build["steps"][0]["type"] == "checkout"
    assert build["steps"][1] == {
        "type": "run",
        "name": "echo build",
        "command": "echo build",
        "shell": None,
        "working_directory": None,
        "environment": {},
        "background": False,
        "no_output_timeout": "10m",
        "when": "on_success",
    }
    assert tasks[1]["environment"]["LEVEL"] == "job" and tasks[1]["environment"]["CIRCLE_BRANCH"] == "main"

    [workflow] = await workflow_done(client, admin, created["id"])
    assert workflow["status"] == "success"
    jobs = (await client.get(f"/api/v2/workflow/{workflow['id']}/job", headers=admin.headers)).json()["items"]
    assert [(j["name"], j["status"], j["job_number"]) for j in jobs] == [
        ("build", "success", 1),
        ("test", "success", 2),
    ]
    assert jobs[1]["dependencies"] == [jobs[0]["id"]]
    details = (await client.get(f"/api/v2/project/{slug}/job/2", headers=admin.headers)).json()
    assert details["status"] == "success" and details["parallel_runs"] == [{"index": 0, "status": "success"}]
    assert details["latest_workflow"]["id"] == workflow["id"] and details["duration"] is not None

    config = (await client.get(f"/api/v2/pipeline/{created['id']}/config", headers=admin.headers)).json()
    assert config["source"] == CONFIG and "build" in config["compiled"]
    values = (await client.get(f"/api/v2/pipeline/{created['id']}/values", headers=admin.headers)).json()
    assert values["pipeline.git.revision"] == sha and values["pipeline.number"] == 1
    by_number = (await client.get(f"/api/v2/project/{slug}/pipeline/1", headers=admin.headers)).json()
    assert by_number["id"] == created["id"]


async def test_unknown_ref_is_a_400(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    for body in ({"branch": "nope"}, {"tag": "v9"}, {"branch": "a", "tag": "b"}, {"branch": "--upload-pack=x"}):
        response = await client.post(f"/api/v2/project/{slug}/pipeline", json=body, headers=admin.headers)
        assert response.status_code == 400, response.text
        assert response.json()["message"]
    assert (
        "branch 'nope' not found"
        in (
            await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": "nope"}, headers=admin.headers)
        ).json()["message"]
    )


async def test_pull_request_refs_resolve(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    git(repo, "checkout", "-q", "-b", "topic")
    head = commit(repo, {"change": "1"})
    git(repo, "update-ref", "refs/pull/7/head", head)
    slug = await make_project(database, admin, repo)
    response = await client.post(
        f"/api/v2/project/{slug}/pipeline", json={"branch": "pull/7/head"}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    body = await pipeline_settled(client, admin, response.json()["id"])
    assert body["vcs"]["revision"] == head and body["vcs"]["branch"] == "pull/7/head"


async def test_config_errors_and_missing_config(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"README": "x"})
    git(repo, "checkout", "-q", "-b", "broken")
    commit(repo, {".circleci/config.yml": "version: 2.1\njobs: {a: {steps: [run: x]}}\nworkflows: {w: {jobs: [b]}}\n"})
    git(repo, "tag", "v1")
    slug = await make_project(database, admin, repo)

    missing = (await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)).json()
    body = await pipeline_settled(client, admin, missing["id"])
    assert body["state"] == "errored" and body["errors"][0]["type"] == "config-fetch"

    broken = (await client.post(f"/api/v2/project/{slug}/pipeline", json={"tag": "v1"}, headers=admin.headers)).json()
    body = await pipeline_settled(client, admin, broken["id"])
    assert body["state"] == "errored" and body["errors"][0]["type"] == "config", body
    assert body["vcs"]["tag"] == "v1" and body["number"] == 2


async def test_numbers_are_sequential_under_concurrent_triggers(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    responses = await asyncio.gather(
        *[client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers) for _ in range(8)]
    )
    assert sorted(r.json()["number"] for r in responses) == list(range(1, 9))
    for response in responses:
        await pipeline_settled(client, admin, response.json()["id"])

    async def numbered() -> list[int] | None:
        numbers = []
        for response in responses:
            for workflow in (
                await client.get(f"/api/v2/pipeline/{response.json()['id']}/workflow", headers=admin.headers)
            ).json()["items"]:
                jobs = (await client.get(f"/api/v2/workflow/{workflow['id']}/job", headers=admin.headers)).json()
                numbers += [j["job_number"] for j in jobs["items"]]
        return numbers if len(numbers) == 16 else None

    assert sorted(await wait_for(numbered)) == list(range(1, 17))
    listed = (await client.get(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)).json()
    assert [p["number"] for p in listed["items"]] == list(range(8, 0, -1))


async def test_numbers_no_column_can_hold_are_not_found(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    huge = str(2**70)
    vcs, org, repo = slug.split("/")
    for path in (
        f"/api/v2/project/{slug}/pipeline/{huge}",
        f"/api/v2/project/{slug}/job/{huge}",
        f"/api/v2/project/{slug}/{huge}/artifacts",
        f"/api/v2/project/{slug}/{huge}/tests",
        f"/api/v1.1/project/{vcs}/{org}/{repo}/{huge}",
    ):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 404, (path, response.text)
    cancel = await client.post(f"/api/v2/project/{slug}/job/{huge}/cancel", headers=admin.headers)
    assert cancel.status_code == 404


async def test_text_no_column_can_hold_is_400(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    for parameters in ({"a\u0000": "x"}, {"a": "x\u0000y"}):
        response = await client.post(
            f"/api/v2/project/{slug}/pipeline", json={"branch": "main", "parameters": parameters}, headers=admin.headers
        )
        assert response.status_code == 400, response.text
    claim = await client.post(
        "/api/v3/runner/claim",
        json={"resource_class": "local", "runner_name": "a\u0000b", "wait_seconds": 0},
        headers={"Authorization": f"Bearer {await runner_token(database)}"},
    )
    assert claim.status_code == 400 and claim.json()["message"].startswith("runner_name")
