"""The agent's test double held to the real server (Buildbot's ``assertArgSpecMatches``, for HTTP):
every route ``tests/agent/fake_server.py`` serves is one of ``circlet.runners.endpoints``' with the
same method, and one conversation of the runner protocol gets the same statuses and answer keys from
both, while the tasks the fake hands out carry no key, of the task or of its parts, that the real
server's claims lack."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from circlet.db.engine import Database
from circlet.runners.endpoints import router
from tests.agent.conftest import make_task, run_step
from tests.agent.fake_server import API, ROUTES, FakeRunnerServer
from tests.conftest import Account, make_account
from tests.pipelines.helpers import make_project, make_repo, runner_token

# two tasks: one to converse with, one whose token is another task's
CONFIG = (
    "version: 2.1\njobs: {build: {docker: [{image: x}], parallelism: 2, steps: [{run: echo one}]}}\n"
    "workflows: {main: {jobs: [build]}}\n"
)
NESTED = ("job", "checkout", "executor")
Transcript = list[tuple[str, int, tuple[str, ...] | None]]


def _template(path: str) -> str:
    """A path with its parameters' names and converters left out: ``/tasks/{}/steps/{}``."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_fake_route_is_a_real_route_with_the_same_method() -> None:
    real = {
        (method, _template(route.path))
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    fake = {(method, _template(API + path)) for method, path in ROUTES.values()}
    assert fake - real == set(), "the fake serves what the real server does not"


@pytest.fixture
def fake() -> Iterator[FakeRunnerServer]:
    server = FakeRunnerServer(token="runner-token", resource_class="local").start()
    yield server
    server.stop()


async def _converse(http: httpx.AsyncClient, token: str, *, first_wait: float) -> tuple[Transcript, dict[str, Any]]:
    """One runner's conversation, recorded as (call, status, keys of the JSON answer)."""
    transcript: Transcript = []

    async def post(name: str, path: str, bearer: str, **kwargs: Any) -> httpx.Response:
        response = await http.post(API + path, headers={"Authorization": f"Bearer {bearer}"}, **kwargs)
        # a claimed task's keys are compared apart: the tests' tasks may leave optional ones out
        keys = tuple(sorted(response.json())) if response.content and name != "claim" else None
        transcript.append((name, response.status_code, keys))
        return response

    claim = {"resource_class": "local", "runner_name": "twin", "wait_seconds": 0}
    await post("claim, unknown token", "/claim", "nobody", json=claim)
    first = (await post("claim", "/claim", token, json={**claim, "wait_seconds": first_wait})).json()
    second = (await post("claim", "/claim", token, json={**claim, "wait_seconds": first_wait})).json()
    task = f"/tasks/{first['task_id']}"
    await post("heartbeat", f"{task}/heartbeat", first["task_token"], json={})
    await post("heartbeat, unknown token", f"{task}/heartbeat", "nobody", json={})
    await post("heartbeat, another task's token", f"{task}/heartbeat", second["task_token"], json={})
    event = {"name": "echo one", "status": "running", "started_at": "2026-01-01T00:00:00Z"}
    await post("step", f"{task}/steps/0", first["task_token"], json=event)
    await post("output", f"{task}/steps/0/output", first["task_token"], content=b"one\n")
    await post("step", f"{task}/steps/0", first["task_token"], json={**event, "status": "success", "exit_code": 0})
    await post("complete", f"{task}/complete", first["task_token"], json={"status": "success", "message": None})
    await post("complete again", f"{task}/complete", first["task_token"], json={"status": "failed"})
    await post("heartbeat, ended", f"{task}/heartbeat", first["task_token"], json={})
    await post("claim, none left", "/claim", token, json=claim)
    return transcript, first


async def test_the_fake_answers_a_conversation_as_the_real_server_does(
    fake: FakeRunnerServer, client: httpx.AsyncClient, database: Database, tmp_path: Path
) -> None:
    account: Account = await make_account(database, org="acme")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, account, tmp_path / "repo")
    token = await runner_token(database)
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=account.headers)
    real, real_task = await _converse(client, token, first_wait=10)

    for _ in range(2):
        fake.enqueue(make_task([run_step("echo one")]))
    async with httpx.AsyncClient(base_url=fake.url) as http:
        doubled, fake_task = await _converse(http, fake.token, first_wait=0)

    assert doubled == real
    assert set(fake_task) - set(real_task) == set(), "the fake's tasks carry keys the server never sends"
    for part in NESTED:
        if isinstance(fake_task.get(part), dict):
            assert set(fake_task[part]) - set(real_task[part]) == set(), f"task[{part!r}] has keys the server lacks"
    for key in set(fake_task) & set(real_task):
        if fake_task[key] is not None and real_task[key] is not None:
            assert type(fake_task[key]) is type(real_task[key]), key
