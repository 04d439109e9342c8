"""What real clients send and require: the CircleCI MCP server's `run_pipeline` body, and the strict
pydantic models of the `circleci2` PyPI package read our pipelines, workflows and jobs unchanged."""

from __future__ import annotations

from pathlib import Path

import httpx
from circleci2.types import Pipeline as StrictPipeline
from circleci2.types import PipelineWorkflowResponse, ProjectPipelineResponse, WorkflowJobsResponse

from circlet.db.engine import Database
from tests.conftest import Account
from tests.pipelines.helpers import git, make_project, make_repo
from tests.pipelines.test_trigger import CONFIG, pipeline_settled


async def test_the_mcp_servers_run_pipeline_body_runs_the_definitions_config(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    git(repo, "checkout", "-q", "-b", "feature")
    slug = await make_project(database, admin, repo)
    project_id = (await client.get(f"/api/v2/project/{slug}", headers=admin.headers)).json()["id"]
    definitions = f"/api/v2/projects/{project_id}/pipeline-definitions"
    [definition] = (await client.get(definitions, headers=admin.headers)).json()["items"]

    # Exactly what the MCP server's run_pipeline tool posts when the user gives no inline config.
    body = {
        "definition_id": definition["id"],
        "config": {"branch": "feature", "content": ""},
        "checkout": {"branch": "feature"},
    }
    response = await client.post(f"/api/v2/project/{slug}/pipeline/run", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    pipeline = await pipeline_settled(client, admin, response.json()["id"])
    assert pipeline["state"] == "created", pipeline["errors"]
    assert pipeline["vcs"]["branch"] == "feature"
    config = (await client.get(f"/api/v2/pipeline/{pipeline['id']}/config", headers=admin.headers)).json()
    assert config["source"] == CONFIG

    blank = {"config": {"content": "  \n"}}
    response = await client.post(f"/api/v2/project/{slug}/pipeline/run", json=blank, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert (await pipeline_settled(client, admin, response.json()["id"]))["state"] == "created"


async def test_strict_client_models_accept_pipelines_workflows_and_jobs(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, repo)
    triggered = await client.post(f"/api/v2/project/{slug}/pipeline", json={}, headers=admin.headers)
    with_parameters = await client.post(
        f"/api/v2/project/{slug}/pipeline/run", json={"parameters": {}}, headers=admin.headers
    )
    for response in (triggered, with_parameters):
        assert response.status_code == 201, response.text
        await pipeline_settled(client, admin, response.json()["id"])

    listed = await client.get(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
    pipelines = ProjectPipelineResponse.model_validate_json(listed.text)
    assert len(pipelines.items) == 2
    for item in listed.json()["items"]:
        assert "trigger_parameters" not in item
        avatar = item["trigger"]["actor"]["avatar_url"]
        assert avatar == f"http://circlet.test/avatars/{admin.user_id}.svg"
    one = await client.get(f"/api/v2/pipeline/{triggered.json()['id']}", headers=admin.headers)
    StrictPipeline.model_validate_json(one.text)

    workflows = await client.get(f"/api/v2/pipeline/{triggered.json()['id']}/workflow", headers=admin.headers)
    [workflow] = PipelineWorkflowResponse.model_validate_json(workflows.text).items
    jobs = await client.get(f"/api/v2/workflow/{workflow.id}/job", headers=admin.headers)
    assert [job.name for job in WorkflowJobsResponse.model_validate_json(jobs.text).items] == ["build", "test"]
