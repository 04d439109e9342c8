"""Deploy markers sent by running jobs (the runner protocol's ``releases``), read back through the
Deploy tag, and rollbacks: the rerun of the workflow that deployed the target, or the project's
rollback pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from circlet.db.engine import Database
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token
from tests.pipelines.test_trigger import pipeline_settled, workflow_done

CONFIG = """
version: 2.1
jobs:
  ship: {docker: [{image: x}], steps: [{run: echo ship}]}
workflows:
  release:
    jobs: [ship]
"""
ROLLBACK = """
version: 2.1
parameters:
  why: {type: string, default: ""}
jobs:
  undo:
    docker: [{image: x}]
    steps:
      - run: echo << pipeline.deploy.target_version >> << pipeline.deploy.environment_name >>
      - run: echo << pipeline.parameters.why >>
workflows:
  rollback:
    jobs: [undo]
"""


async def deploy(
    client: httpx.AsyncClient, runner: ProtocolRunner, admin: Account, slug: str, markers: list[dict[str, Any]]
) -> tuple[str, list[httpx.Response]]:
    """One pipeline whose job sends the markers, then succeeds; the pipeline's id and the answers."""
    created = (await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)).json()
    await pipeline_settled(client, admin, created["id"])
    task = await runner.claim(wait=5)
    assert task is not None
    answers = [await runner.call(task, "releases", json=marker) for marker in markers]
    await runner.finish(task)
    await workflow_done(client, admin, created["id"])
    return created["id"], answers


async def test_markers_environments_components_versions_and_rollback(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG, ".circleci/rollback.yml": ROLLBACK})
    slug = await make_project(database, admin, repo)
    project_id = (await client.get(f"/api/v2/project/{slug}", headers=admin.headers)).json()["id"]
    runner = ProtocolRunner(client, await runner_token(database))
    plan_v1 = {"action": "plan", "environment_name": "prod", "component_name": "api", "target_version": "v1"}
    first, answers = await deploy(
        client,
        runner,
        admin,
        slug,
        [
            plan_v1,
            {"action": "update", "status": "running"},
            {"action": "update", "status": "SUCCESS"},
            {"action": "update", "status": "FAILED"},  # after the end: refused
            plan_v1,  # the same deploy name twice in a workflow: refused
            {"action": "update", "deploy_name": "other", "status": "SUCCESS"},  # never planned
            {"action": "update", "status": "DONE"},
            {"action": "log", "target_version": "t1"},  # default environment and component
        ],
    )
    assert [a.status_code for a in answers] == [201, 201, 201, 409, 409, 404, 400, 201]
    assert answers[0].json()["status"] == "PENDING" and answers[7].json()["status"] == "SUCCESS"
    second, answers = await deploy(
        client,
        runner,
        admin,
        slug,
        [
            {"action": "plan", "environment_name": "prod", "component_name": "api", "target_version": "v2"},
            {"action": "update", "status": "SUCCESS"},
        ],
    )
    assert [a.status_code for a in answers] == [201, 201]

    environments = await client.get(
        "/api/v2/deploy/environments", params={"org-id": admin.org_id, "page-size": 1}, headers=admin.headers
    )
    assert environments.status_code == 200, environments.text
    page = environments.json()
    assert [e["name"] for e in page["items"]] == ["prod"] and page["next_page_token"]
    rest = await client.get(
        "/api/v2/deploy/environments",
        params={"org-id": admin.org_id, "page-size": 1, "page-token": page["next_page_token"]},
        headers=admin.headers,
    )
    assert [e["name"] for e in rest.json()["items"]] == ["default"] and rest.json()["next_page_token"] is None
    prod = page["items"][0]
    got = await client.get(f"/api/v2/deploy/environments/{prod['id']}", headers=admin.headers)
    assert got.json() == prod and prod["labels"] == [] and prod["description"] == ""

    components = (
        await client.get(
            "/api/v2/deploy/components",
            params={"org-id": admin.org_id, "project-id": project_id, "page-size": 10},
            headers=admin.headers,
        )
    ).json()["items"]
    assert [(c["name"], c["release_count"]) for c in components] == [("api", 2), ("app", 1)]
    api = components[0]
    assert (await client.get(f"/api/v2/deploy/components/{api['id']}", headers=admin.headers)).json() == api
    versions = (
        await client.get(
            f"/api/v2/deploy/components/{api['id']}/versions",
            params={"environment-id": prod["id"]},
            headers=admin.headers,
        )
    ).json()["items"]
    assert [(v["name"], v["is_live"], v["namespace"]) for v in versions] == [
        ("v2", True, "default"),
        ("v1", False, "default"),
    ]
    assert versions[1]["pipeline_id"] == first and versions[0]["pipeline_id"] == second
    assert versions[1]["job_number"] == 1 and versions[1]["job_id"]

    rollback = f"/api/v2/projects/{project_id}/rollback"
    body = {"environment_name": "prod", "component_name": "api", "current_version": "v2", "target_version": "v1"}
    for bad, status in (
        ({**body, "current_version": "v1"}, 409),
        ({**body, "target_version": "v9"}, 404),
        ({**body, "component_name": "nope"}, 404),
        ({**body, "extra": 1}, 400),
        ({k: v for k, v in body.items() if k != "target_version"}, 400),
    ):
        response = await client.post(rollback, json=bad, headers=admin.headers)
        assert response.status_code == status, (bad, response.text)
    outsider = await make_account(database)
    assert (await client.post(rollback, json=body, headers=outsider.headers)).status_code == 404

    # No rollback pipeline: the workflow that deployed v1 runs again.
    rerun = await client.post(rollback, json=body, headers=admin.headers)
    assert rerun.status_code == 202, rerun.text
    assert rerun.json()["rollback_type"] == "WORKFLOW_RERUN"
    workflows = (await client.get(f"/api/v2/pipeline/{first}/workflow", headers=admin.headers)).json()["items"]
    assert len(workflows) == 2
    task = await runner.claim(wait=5)
    assert task is not None and task["job"]["name"] == "ship"
    await runner.finish(task)

    # With a rollback pipeline definition: a pipeline of it, with the deploy's values.
    definitions = f"/api/v2/projects/{project_id}/pipeline-definitions"
    created = await client.post(
        definitions,
        json={"name": "rollback", "config_source": {"provider": "circleci", "file_path": ".circleci/rollback.yml"}},
        headers=admin.headers,
    )
    assert created.status_code == 200, created.text
    piped = await client.post(rollback, json={**body, "parameters": {"why": "bad"}}, headers=admin.headers)
    assert piped.status_code == 202, piped.text
    assert piped.json()["rollback_type"] == "PIPELINE"
    pipelines = (await client.get(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)).json()["items"]
    newest = pipelines[0]
    settled = await pipeline_settled(client, admin, newest["id"])
    assert settled["state"] == "created", settled["errors"]
    task = await runner.claim(wait=5)
    assert task is not None and task["job"]["name"] == "undo"
    await runner.finish(task)
    config = (await client.get(f"/api/v2/pipeline/{newest['id']}/config", headers=admin.headers)).json()
    assert config["source"] == ROLLBACK and "echo v1 prod" in config["compiled"] and "echo bad" in config["compiled"]
    versions = (await client.get(f"/api/v2/deploy/components/{api['id']}/versions", headers=admin.headers)).json()
    # the rollbacks' releases are pending until their jobs mark them: v2 is still live
    assert [(v["name"], v["is_live"]) for v in versions["items"]] == [("v2", True), ("v1", False)]
