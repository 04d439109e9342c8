"""The server side of docs/runner-protocol.md, spoken over HTTP: tokens, claims and long-polls,
queue depth, step events and output, completion."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from circlet.db.engine import Database
from circlet.engine import repository as engine
from circlet.runners.service import RUNNER_TOKEN_PREFIX
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token, wait_for


@pytest.fixture
async def acme(database: Database) -> Account:
    """An admin of organization `acme`, whose resource classes are `acme/NAME`."""
    return await make_account(database, org="acme")


CONFIG = """
version: 2.1
jobs:
  split:
    docker: [{image: x}]
    resource_class: acme/linux
    parallelism: 2
    steps: [{run: echo one}]
workflows:
  main:
    jobs: [split]
"""


async def test_tokens_classes_depth_long_poll_output_and_complete(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, acme, tmp_path / "repo")
    token = await runner_token(database, "acme/linux")
    assert token.startswith(RUNNER_TOKEN_PREFIX)
    runner = ProtocolRunner(client, token, "acme/linux")
    auth = {"Authorization": f"Bearer {token}"}

    assert (await client.post("/api/v3/runner/claim", json={"resource_class": "acme/linux"})).status_code == 401
    other = await client.post("/api/v3/runner/claim", json={"resource_class": "local", "wait_seconds": 0}, headers=auth)
    assert other.status_code == 403
    depth = await client.get("/api/v3/runner/tasks", params={"resource-class": "acme/linux"}, headers=auth)
    assert depth.json() == {"unclaimed_task_count": 0}

    # A long-poll that starts before the trigger gets the task as soon as it is queued.
    started = time.monotonic()
    waiting = asyncio.create_task(runner.claim(wait=10))
    await asyncio.sleep(0.2)
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=acme.headers)
    first = await waiting
    assert first is not None and time.monotonic() - started < 5
    second = await runner.claim()
    assert second is not None
    assert {first["job"]["parallel_index"], second["job"]["parallel_index"]} == {0, 1}
    assert first["job"]["parallelism"] == 2 and first["environment"]["CIRCLE_NODE_TOTAL"] == "2"
    running = await client.get("/api/v3/runner/tasks/running", params={"resource-class": "acme/linux"}, headers=auth)
    assert running.json() == {"running_runner_tasks": 2}

    # A task token works for its own task only.
    wrong = await client.post(
        f"/api/v3/runner/tasks/{second['task_id']}/heartbeat",
        json={},
        headers={"Authorization": f"Bearer {first['task_token']}"},
    )
    assert wrong.status_code == 403
    assert (await runner.call(first, "steps/9", json={"status": "running"})).status_code == 404
    for chunk in (b"hello ", b"world\n"):
        await runner.call(first, "steps/0/output", content=chunk, headers={"Content-Type": "application/octet-stream"})
    async with database.reading() as session:
        assert await engine.output_of(session, uuid.UUID(first["task_id"]), 0) == b"hello world\n"

    await runner.finish(first)
    assert (await runner.call(first, "complete", json={"status": "success"})).status_code == 200
    assert (await runner.call(first, "complete", json={"status": "failed"})).status_code == 409
    await runner.finish(second, "failed")
    details = (await client.get(f"/api/v2/project/{slug}/job/1", headers=acme.headers)).json()
    assert details["status"] == "failed"
    assert sorted(r["status"] for r in details["parallel_runs"]) == ["failed", "success"]
    assert details["executor"] == {"resource_class": "acme/linux", "type": "docker"}


async def test_a_job_for_a_class_without_runners_says_why(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, acme, tmp_path / "repo")
    created = await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=acme.headers)
    assert created.status_code == 201, created.text
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=acme.headers)
    for _ in range(200):
        details = await client.get(f"/api/v2/project/{slug}/job/1", headers=acme.headers)
        if details.status_code == 200:
            break
        await asyncio.sleep(0.02)
    body = details.json()
    assert body["status"] == "queued"
    assert "No runner is registered for resource class acme/linux" in body["messages"][0]["message"]


WIDE = """
version: 2.1
jobs:
  wide: {docker: [{image: x}], parallelism: 12, steps: [{run: echo}]}
workflows:
  main:
    jobs: [wide]
"""


async def test_concurrent_claims_never_share_a_task(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": WIDE})
    slug = await make_project(database, acme, tmp_path / "repo")
    runners = [ProtocolRunner(client, await runner_token(database)) for _ in range(4)]
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=acme.headers)
    auth = {"Authorization": f"Bearer {runners[0].token}"}

    async def queued() -> bool:
        depth = await client.get("/api/v3/runner/tasks", params={"resource-class": "local"}, headers=auth)
        return bool(depth.json()["unclaimed_task_count"] == 12)

    await wait_for(queued)
    claims = await asyncio.gather(*(runners[i % 4].claim() for i in range(16)))
    claimed = [task for task in claims if task is not None]
    assert len(claimed) == 12
    assert len({task["task_id"] for task in claimed}) == 12
    assert sorted(task["job"]["parallel_index"] for task in claimed) == list(range(12))


async def test_a_runner_gone_before_its_claim_is_answered_gets_no_task(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    """A long-poll whose runner went away (stopped, restarted, killed) must not take a task: nobody
    would read the answer, and the task would wait out its lease, then fail."""
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, acme, tmp_path / "repo")
    token = await runner_token(database, "acme/linux")
    auth = {"Authorization": f"Bearer {token}"}
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=acme.headers)
    depth = {"unclaimed_task_count": 0}
    for _ in range(200):
        answer = await client.get("/api/v3/runner/tasks", params={"resource-class": "acme/linux"}, headers=auth)
        depth = answer.json()
        if depth["unclaimed_task_count"] == 2:
            break
        await asyncio.sleep(0.02)
    assert depth == {"unclaimed_task_count": 2}

    # The claim's request, on a connection that is closed by the time the server looks for a task.
    body = b'{"resource_class": "acme/linux", "wait_seconds": 5}'
    messages = [{"type": "http.request", "body": body, "more_body": False}, {"type": "http.disconnect"}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/v3/runner/claim", "raw_path": b"/api/v3/runner/claim", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"circlet.test"), (b"authorization", f"Bearer {token}".encode()),
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("circlet.test", 80),
    }  # fmt: skip
    await client.app(scope, receive, send)  # type: ignore[attr-defined]
    assert sent[0]["status"] == 204
    answer = await client.get("/api/v3/runner/tasks", params={"resource-class": "acme/linux"}, headers=auth)
    assert answer.json() == {"unclaimed_task_count": 2}
