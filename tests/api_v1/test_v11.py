"""API v1.1 job details with steps and step output (what the CircleCI MCP server reads for failure
logs), and the test timings a claimed task carries, over HTTP against the real app."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete

from circlet.db.engine import Database
from circlet.db.models import Membership
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token

CONFIG = """
version: 2.1
jobs:
  build:
    docker: [{image: x}]
    parallelism: 2
    steps: [checkout, {run: {name: Test, command: make test}}]
workflows:
  main:
    jobs: [build]
"""
STARTED = "2026-01-01T00:00:00Z"
ENDED = "2026-01-01T00:00:01.500Z"


async def step(runner: ProtocolRunner, task: dict[str, Any], index: int, status: str, output: bytes) -> None:
    name = task["steps"][index].get("name", task["steps"][index]["type"])
    running = {"name": name, "status": "running", "started_at": STARTED}
    assert (await runner.call(task, f"steps/{index}", json=running)).status_code == 200
    if output:
        headers = {"Content-Type": "application/octet-stream"}
        for chunk in (output[:5], output[5:]):
            assert (await runner.call(task, f"steps/{index}/output", content=chunk, headers=headers)).status_code == 200
    done = {**running, "status": status, "exit_code": 0 if status == "success" else 2, "ended_at": ENDED}
    assert (await runner.call(task, f"steps/{index}", json=done)).status_code == 200


async def run_failing_build(client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path) -> str:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG}, message="Add the build\n\nwith a body")
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
    for _ in range(2):
        task = await runner.claim(wait=5)
        assert task is not None
        node = task["job"]["parallel_index"]
        await step(runner, task, 0, "success", b"")
        await step(runner, task, 1, "failed" if node == 1 else "success", f"node {node}: FAIL here\n".encode())
        complete = {"status": "failed" if node == 1 else "success"}
        assert (await runner.call(task, "complete", json=complete)).status_code == 200
    return slug


async def test_v11_build_shows_steps_actions_and_output(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await run_failing_build(client, database, admin, tmp_path)
    vcs, org, repo = slug.split("/")
    long_vcs = {"gh": "github", "bb": "bitbucket"}.get(vcs, vcs)
    response = await client.get(f"/api/v1.1/project/{long_vcs}/{org}/{repo}/1", headers=admin.headers)
    assert response.status_code == 200, response.text
    build = response.json()
    assert (build["build_num"], build["status"], build["lifecycle"], build["outcome"]) == (
        1,
        "failed",
        "finished",
        "failed",
    )
    assert build["branch"] == "main" and len(build["vcs_revision"]) == 40
    assert build["subject"] == "Add the build"
    assert build["start_time"] and build["stop_time"] and build["build_time_millis"] >= 0
    assert build["workflows"]["job_name"] == "build" and build["workflows"]["workflow_name"] == "main"
    workflow = (await client.get(f"/api/v2/project/{slug}/job/1", headers=admin.headers)).json()["latest_workflow"]
    assert build["workflows"]["workflow_id"] == workflow["id"]

    assert [s["name"] for s in build["steps"]] == ["Checkout code", "Test"]
    checkout, test = build["steps"]
    assert [(a["index"], a["step"], a["status"], a["has_output"]) for a in checkout["actions"]] == [
        (0, 0, "success", False),
        (1, 0, "success", False),
    ]
    assert checkout["actions"][0]["output_url"] is None
    first, second = test["actions"]
    assert (first["index"], first["status"], first["exit_code"], first["failed"]) == (0, "success", 0, None)
    assert (second["index"], second["status"], second["exit_code"], second["failed"]) == (1, "failed", 2, True)
    assert second["name"] == "Test" and second["run_time_millis"] == 1500
    assert second["start_time"] == "2026-01-01T00:00:00.000Z" and second["end_time"] == "2026-01-01T00:00:01.500Z"
    assert second["has_output"] is True
    url = httpx.URL(second["output_url"])
    assert url.path == f"/api/v1.1/project/{long_vcs}/{org}/{repo}/1/output/1/1"

    output = await client.get(url.path, headers=admin.headers)
    assert output.status_code == 200
    assert output.json() == [{"message": "node 1: FAIL here\n", "type": "out", "time": "2026-01-01T00:00:01.500Z"}]
    short = await client.get(f"/api/v1.1/project/{slug}/1/output/1/0", headers=admin.headers)
    assert short.json()[0]["message"] == "node 0: FAIL here\n"
    assert (await client.get(f"/api/v1.1/project/{slug}/1/output/0/0", headers=admin.headers)).json() == []


async def test_v11_refuses_outsiders_and_unknown_builds(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await run_failing_build(client, database, admin, tmp_path)
    viewer = await make_account(database, org=admin.org_slug.rsplit("/", 1)[-1], role="viewer")
    outsider = await make_account(database)
    assert (await client.get(f"/api/v1.1/project/{slug}/1", headers=viewer.headers)).json()["status"] == "failed"
    for path in (f"/api/v1.1/project/{slug}/1", f"/api/v1.1/project/{slug}/1/output/1/1"):
        refused = await client.get(path, headers=outsider.headers)
        assert refused.status_code == 404 and "message" in refused.json()
        assert (await client.get(path)).status_code == 401
    for path in (
        f"/api/v1.1/project/{slug}/99",
        f"/api/v1.1/project/{slug}/1/output/9/0",
        f"/api/v1.1/project/{slug}/1/output/1/7",
        "/api/v1.1/project/svn/acme/app/1",
    ):
        assert (await client.get(path, headers=admin.headers)).status_code == 404, path


async def test_v11_queued_job_has_no_outcome(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
    for _ in range(200):
        response = await client.get(f"/api/v1.1/project/{slug}/1", headers=admin.headers)
        if response.status_code == 200:
            break
        await asyncio.sleep(0.02)
    build = response.json()
    assert (build["status"], build["lifecycle"], build["outcome"], build["steps"]) == ("queued", "queued", None, [])
    assert build["start_time"] is None and build["build_time_millis"] is None


TIMED = """
version: 2.1
jobs:
  unit: {docker: [{image: x}], steps: [{run: echo}]}
workflows:
  main:
    jobs: [unit]
"""
JUNIT_OLD = b"""<testsuite name="s">
  <testcase file="a_test.py" classname="A" name="one" time="9"/>
  <testcase file="b_test.py" classname="B" name="two" time="1"/>
</testsuite>"""
JUNIT_NEW = b"""<testsuite name="s">
  <testcase file="a_test.py" classname="A" name="one" time="2.5"/>
  <testcase file="a_test.py" classname="A" name="three" time="0.25"/>
</testsuite>"""


async def test_a_claimed_task_carries_timings_from_stored_results(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": TIMED})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    seen = []
    for junit in (JUNIT_OLD, JUNIT_NEW, None):
        await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
        task = await runner.claim(wait=5)
        assert task is not None
        seen.append(task["test_timings"])
        if junit is not None:
            stored = await client.put(
                f"/api/v3/runner/tasks/{task['task_id']}/tests",
                content=junit,
                headers={"Authorization": f"Bearer {task['task_token']}"},
            )
            assert stored.status_code == 201, stored.text
        await runner.finish(task)
    assert seen[0] is None
    assert seen[1] == {
        "filename": {"a_test.py": 9.0, "b_test.py": 1.0},
        "classname": {"A": 9.0, "B": 1.0},
        "testname": {"one": 9.0, "two": 1.0},
    }
    # The newest result of each test; a file or class sums its tests of the newest job that ran it.
    assert seen[2] == {
        "filename": {"a_test.py": 2.75, "b_test.py": 1.0},
        "classname": {"A": 2.75, "B": 1.0},
        "testname": {"one": 2.5, "three": 0.25, "two": 1.0},
    }


async def test_private_raw_output_is_the_step_output_as_text(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    """``/api/private/output/raw/{slug}/{job}/output/{index}/{step}`` and ``.../error/...``: what the
    CircleCI MCP server reads for a failed step's logs (parallel index first, then step)."""
    slug = await run_failing_build(client, database, admin, tmp_path)
    vcs, org, repo = slug.split("/")
    long_vcs = {"gh": "github", "bb": "bitbucket"}.get(vcs, vcs)
    base = f"/api/private/output/raw/{slug}/1"
    output = await client.get(f"{base}/output/1/1", headers=admin.headers)
    assert output.status_code == 200
    assert output.headers["content-type"] == "text/plain; charset=utf-8"
    assert output.text == "node 1: FAIL here\n"
    long_form = await client.get(f"/api/private/output/raw/{long_vcs}/{org}/{repo}/1/output/0/1", headers=admin.headers)
    assert long_form.text == "node 0: FAIL here\n"
    assert (await client.get(f"{base}/output/0/0", headers=admin.headers)).text == ""  # checkout printed nothing
    error = await client.get(f"{base}/error/1/1", headers=admin.headers)
    assert (error.status_code, error.text) == (200, "")

    outsider = await make_account(database)
    for path in (f"{base}/output/1/1", f"{base}/error/1/1"):
        refused = await client.get(path, headers=outsider.headers)
        assert refused.status_code == 404 and "message" in refused.json()
        assert (await client.get(path)).status_code == 401
    for path in (
        f"{base}/output/1/7",
        f"{base}/output/9/1",
        f"{base}/error/9/1",
        f"/api/private/output/raw/{slug}/99/output/0/1",
        f"{base}/stdout/1/1",
    ):
        missing = await client.get(path, headers=admin.headers)
        assert missing.status_code == 404 and "message" in missing.json(), path


async def test_private_followed_projects_are_the_projects_of_the_callers_organizations(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug_b = await make_project(database, admin, tmp_path / "repo", name="b-app")
    slug_a = await make_project(database, admin, tmp_path / "repo", name="A-app")
    outsider = await make_account(database)
    await make_project(database, outsider, tmp_path / "repo", name="theirs")

    response = await client.get("/api/private/me/followed-projects", headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_page_token"] is None
    assert [item["slug"] for item in body["items"]] == [slug_a, slug_b]
    first = body["items"][0]
    project = (await client.get(f"/api/v2/project/{slug_a}", headers=admin.headers)).json()
    assert first == {
        "default_branch": "main",
        "id": project["id"],
        "name": "A-app",
        "organization_id": project["organization_id"],
        "organization_name": project["organization_name"],
        "slug": slug_a,
        "vcs_type": "github",
    }
    theirs = (await client.get("/api/private/me/followed-projects", headers=outsider.headers)).json()["items"]
    assert [item["name"] for item in theirs] == ["theirs"]
    assert (await client.get("/api/private/me/followed-projects")).status_code == 401


async def test_output_url_is_signed_for_its_user_and_path_and_needs_no_token(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    """As on CircleCI, where ``output_url`` is a storage URL clients fetch as it is: circlet's is
    signed for the user who read the job, for that path, for an hour."""
    slug = await run_failing_build(client, database, admin, tmp_path)
    viewer = await make_account(database, org=admin.org_slug.rsplit("/", 1)[-1], role="viewer")
    build = (await client.get(f"/api/v1.1/project/{slug}/1", headers=viewer.headers)).json()
    url = httpx.URL(build["steps"][1]["actions"][1]["output_url"])
    assert set(url.params) == {"expires", "signer", "signature"} and url.params["signer"] == viewer.user_id

    fetched = await client.get(str(url))  # no token
    assert fetched.status_code == 200
    assert fetched.json()[0]["message"] == "node 1: FAIL here\n"

    other_path = url.copy_with(path=url.path.replace("/output/1/1", "/output/1/0"))
    tampered = url.copy_set_param("signature", "0" * 64)
    forged_signer = url.copy_set_param("signer", admin.user_id)
    expired = url.copy_set_param("expires", "1000")
    garbage = url.copy_set_param("expires", "x" * 40)
    non_ascii = url.copy_set_param("signature", "é" * 64).copy_set_param("signer", "ü")
    signer = client.app.state.legacy_service.output_urls  # type: ignore[attr-defined]
    past = int(time.time()) - 10
    signed_but_expired = url.copy_merge_params(
        {"expires": str(past), "signature": signer._signature(url.path, past, viewer.user_id)}
    )
    for refused in (other_path, tampered, forged_signer, expired, garbage, non_ascii, signed_but_expired):
        answer = await client.get(str(refused))
        assert answer.status_code == 401, refused
        assert "signature is invalid or has expired" in answer.json()["message"]
    # With a token the token decides, whatever the query holds.
    assert (await client.get(str(tampered), headers=admin.headers)).status_code == 200

    # The URL acts for its user as they are now: out of the organization, the output is not theirs.
    async with database.writing() as session:
        await session.execute(delete(Membership).where(Membership.user_id == uuid.UUID(viewer.user_id)))
    assert (await client.get(str(url))).status_code == 404
