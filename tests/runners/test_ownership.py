"""Runners belong to organizations (issue 20): resource classes owned by one organization, jobs
refused for any class that is neither theirs nor shared, the claim path's own check, tokens listed
and revoked, runner instances, and CircleCI's runner API replayed as its CLI sends it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from circlet.app import create_app
from circlet.audit import repository as audit
from circlet.auth.tokens import token_hash
from circlet.db.engine import Database
from circlet.db.models import RunnerToken, Task
from circlet.runners import repository as runners
from circlet.settings import Settings
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token, wait_for

# What the official CLI sends (internal/apiclient/runner.go): JSON bodies, Circle-Token.
CLI_HEADERS = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "circleci-cli/0.1"}


def cli(account: Account) -> dict[str, str]:
    return {**CLI_HEADERS, "Circle-Token": account.token}


@pytest.fixture
async def acme(database: Database) -> Account:
    return await make_account(database, org="acme", login="alice")


@pytest.fixture
async def rival(database: Database) -> Account:
    return await make_account(database, org="rival", login="robin")


def config(*jobs: tuple[str, str]) -> str:
    """A workflow of independent jobs, each on the given resource class."""
    body = "".join(
        f"  {name}:\n    machine: true\n    resource_class: {resource_class}\n    steps: [{{run: echo {name}}}]\n"
        for name, resource_class in jobs
    )
    names = ", ".join(name for name, _ in jobs)
    return f"version: 2.1\njobs:\n{body}workflows:\n  main:\n    jobs: [{names}]\n"


async def trigger(client: httpx.AsyncClient, account: Account, slug: str, expected: int) -> dict[str, dict[str, Any]]:
    """Triggers the project's pipeline; its jobs by name, once each has left `blocked`."""
    response = await client.post(f"/api/v2/project/{slug}/pipeline", headers=account.headers)
    assert response.status_code == 201, response.text
    pipeline_id = response.json()["id"]

    async def jobs() -> dict[str, dict[str, Any]] | None:
        workflows = (await client.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=account.headers)).json()
        if not workflows.get("items"):
            return None
        listed = (
            await client.get(f"/api/v2/workflow/{workflows['items'][0]['id']}/job", headers=account.headers)
        ).json()
        found = {job["name"]: job for job in listed["items"]}
        return found if len(found) == expected and all(j["status"] != "blocked" for j in found.values()) else None

    return await wait_for(jobs)  # type: ignore[no-any-return]


async def details(client: httpx.AsyncClient, account: Account, slug: str, number: int) -> dict[str, Any]:
    response = await client.get(f"/api/v2/project/{slug}/job/{number}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def depth(client: httpx.AsyncClient, token: str, resource_class: str) -> int:
    response = await client.get(
        "/api/v3/runner/tasks", params={"resource-class": resource_class}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["unclaimed_task_count"])


async def audit_actions(database: Database, action: str) -> list[dict[str, Any]]:
    async with database.reading() as session:
        return [event.details async for event in audit.events(session) if event.action == action]


async def test_the_official_clis_requests(client: httpx.AsyncClient, database: Database, acme: Account) -> None:
    """`circleci runner resource-class create|list|delete`, `token create|list|delete` and
    `instance list`, request for request as the CLI sends them, with their answers."""
    created = await client.post(
        "/api/v3/runner/resource",
        content=b'{"description":"the-description","resource_class":"acme/linux"}',
        headers=cli(acme),
    )
    assert created.status_code == 201, created.text
    resource_class = created.json()
    assert resource_class == {
        "id": resource_class["id"],
        "resource_class": "acme/linux",
        "description": "the-description",
    }
    assert (
        await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    ).status_code == 409

    listed = await client.get("/api/v3/runner/resource", params={"namespace": "acme"}, headers=cli(acme))
    assert listed.json() == {"items": [resource_class]}
    by_org = await client.get("/api/v3/runner/resource", params={"org-id": acme.org_id}, headers=cli(acme))
    assert by_org.json() == {"items": [resource_class]}

    minted = await client.post(
        "/api/v3/runner/token", content=b'{"nickname":"rack-1","resource_class":"acme/linux"}', headers=cli(acme)
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()
    assert token["token"].startswith("circlet_rt_") and token["nickname"] == "rack-1"
    assert token["resource_class"] == "acme/linux" and token["created_at"].endswith("Z")

    tokens = await client.get("/api/v3/runner/token?resource-class=acme%2Flinux", headers=cli(acme))
    [item] = tokens.json()["items"]
    assert item["id"] == token["id"] and "token" not in item and token["token"] not in tokens.text
    assert item["last_used_at"] is None

    # A runner claims once: an instance, and the token's last use.
    runner = await client.post(
        "/api/v3/runner/claim",
        json={"resource_class": "acme/linux", "runner_name": "rack-1.example", "wait_seconds": 0},
        headers={"Authorization": f"Bearer {token['token']}", "User-Agent": "circlet-runner/9.9.9"},
    )
    assert runner.status_code == 204
    for query in ({"resource-class": "acme/linux"}, {"namespace": "acme"}, {"org-id": acme.org_id}):
        instances = await client.get("/api/v3/runner", params=query, headers=cli(acme))
        [instance] = instances.json()["items"]
        assert instance["name"] == instance["hostname"] == "rack-1.example"
        assert instance["resource_class"] == "acme/linux" and instance["version"] == "9.9.9"
        assert instance["ip"] == "127.0.0.1" and instance["first_connected"] and instance["last_connected"]
        assert instance["last_used"] is None
    assert (await client.get("/api/v3/runner", headers=cli(acme))).status_code == 400
    [item] = (await client.get("/api/v3/runner/token?resource-class=acme%2Flinux", headers=cli(acme))).json()["items"]
    assert item["last_used_at"] is not None

    # A class with tokens is deleted only by force (the CLI's `resource-class delete`).
    class_path = f"/api/v3/runner/resource/{resource_class['id']}"
    refused = await client.delete(class_path, headers=cli(acme))
    assert refused.status_code == 409 and "token" in refused.json()["message"]
    deleted = await client.delete(f"/api/v3/runner/token/{token['id']}", headers=cli(acme))
    assert deleted.status_code == 200 and deleted.json() == {"message": "Deleted."}
    assert (await client.delete(f"/api/v3/runner/token/{token['id']}", headers=cli(acme))).status_code == 404
    again = await client.post(
        "/api/v3/runner/token", json={"resource_class": "acme/linux", "nickname": "b"}, headers=cli(acme)
    )
    assert (await client.delete(class_path + "/force", headers=cli(acme))).status_code == 200
    assert (await client.get("/api/v3/runner/resource?namespace=acme", headers=cli(acme))).json() == {"items": []}
    claim = await client.post(
        "/api/v3/runner/claim",
        json={"resource_class": "acme/linux", "wait_seconds": 0},
        headers={"Authorization": f"Bearer {again.json()['token']}"},
    )
    assert claim.status_code == 401

    recorded = {
        action: len(await audit_actions(database, action))
        for action in (
            "runner.resource_class.create",
            "runner.token.create",
            "runner.token.revoke",
            "runner.resource_class.delete",
        )
    }
    assert recorded == {
        "runner.resource_class.create": 1,
        "runner.token.create": 2,
        "runner.token.revoke": 1,
        "runner.resource_class.delete": 1,
    }
    for details_ in await audit_actions(database, "runner.token.create"):
        assert not any(str(value).startswith("circlet_rt_") for value in details_.values())


async def test_who_may_manage_classes_and_tokens(
    client: httpx.AsyncClient, database: Database, acme: Account, rival: Account
) -> None:
    member = await make_account(database, org="acme", role="member")
    created = await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    class_id = created.json()["id"]
    token = (await client.post("/api/v3/runner/token", json={"resource_class": "acme/linux"}, headers=cli(acme))).json()

    # Another organization: 404 for all of it, as for things that do not exist.
    for method, path, body in (
        ("POST", "/api/v3/runner/resource", {"resource_class": "acme/gpu"}),
        ("GET", "/api/v3/runner/resource?namespace=acme", None),
        ("GET", f"/api/v3/runner/resource?org-id={acme.org_id}", None),
        ("DELETE", f"/api/v3/runner/resource/{class_id}/force", None),
        ("POST", "/api/v3/runner/token", {"resource_class": "acme/linux"}),
        ("GET", "/api/v3/runner/token?resource-class=acme/linux", None),
        ("DELETE", f"/api/v3/runner/token/{token['id']}", None),
        ("GET", "/api/v3/runner?resource-class=acme/linux", None),
        ("GET", "/api/v3/runner?namespace=acme", None),
    ):
        answer = await client.request(method, path, json=body, headers=cli(rival))
        assert answer.status_code == 404, (method, path, answer.text)
        assert set(answer.json()) == {"message"}
    # A member sees classes and runners, and changes nothing.
    assert (await client.get("/api/v3/runner/resource?namespace=acme", headers=cli(member))).status_code == 200
    assert (await client.get("/api/v3/runner?namespace=acme", headers=cli(member))).status_code == 200
    for method, path, body in (
        ("POST", "/api/v3/runner/resource", {"resource_class": "acme/gpu"}),
        ("DELETE", f"/api/v3/runner/resource/{class_id}/force", None),
        ("POST", "/api/v3/runner/token", {"resource_class": "acme/linux"}),
        ("GET", "/api/v3/runner/token?resource-class=acme/linux", None),
        ("DELETE", f"/api/v3/runner/token/{token['id']}", None),
    ):
        answer = await client.request(method, path, json=body, headers=cli(member))
        assert answer.status_code == 403, (method, path, answer.text)
    # Bad input: a clear 4xx, never a 5xx.
    for method, path, body in (
        ("POST", "/api/v3/runner/resource", {"resource_class": "Not A Class"}),
        ("POST", "/api/v3/runner/resource", {"resource_class": "acme"}),
        ("POST", "/api/v3/runner/resource", {}),
        ("POST", "/api/v3/runner/token", {"resource_class": "local"}),
        ("DELETE", "/api/v3/runner/resource/not-a-uuid", None),
        ("DELETE", "/api/v3/runner/token/not-a-uuid", None),
        ("GET", "/api/v3/runner/resource", None),
        ("GET", "/api/v3/runner/resource?org-id=nope", None),
    ):
        answer = await client.request(method, path, json=body, headers=cli(acme))
        assert 400 <= answer.status_code < 500 and "message" in answer.json(), (method, path, answer.text)
    assert (await client.get("/api/v3/runner/resource?namespace=acme")).status_code == 401
    # The namespace is the organization's name: rival's classes are rival/NAME.
    assert (
        await client.post("/api/v3/runner/resource", json={"resource_class": "rival/arm"}, headers=cli(rival))
    ).status_code == 201


async def test_every_combination_of_organization_and_class(
    client: httpx.AsyncClient, database: Database, acme: Account, rival: Account, tmp_path: Path
) -> None:
    """Own class, another organization's class, a shared class and an unknown class, from two
    organizations with a runner each: only what an organization may use ever reaches a runner."""
    await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    await client.post("/api/v3/runner/resource", json={"resource_class": "rival/linux"}, headers=cli(rival))
    acme_token = await runner_token(database, "acme/linux")
    rival_token = await runner_token(database, "rival/linux")
    local = ProtocolRunner(client, await runner_token(database))
    jobs = (("own", "acme/linux"), ("theirs", "rival/linux"), ("shared", "local"), ("unknown", "acme/nope"))
    make_repo(tmp_path / "acme", {".circleci/config.yml": config(*jobs)})
    make_repo(tmp_path / "rival", {".circleci/config.yml": config(("borrowed", "acme/linux"), ("own", "rival/linux"))})
    acme_slug = await make_project(database, acme, tmp_path / "acme")
    rival_slug = await make_project(database, rival, tmp_path / "rival")

    acme_jobs = await trigger(client, acme, acme_slug, 4)
    rival_jobs = await trigger(client, rival, rival_slug, 2)
    assert {name: job["status"] for name, job in acme_jobs.items()} == {
        "own": "queued", "theirs": "failed", "shared": "queued", "unknown": "failed",
    }  # fmt: skip
    assert {name: job["status"] for name, job in rival_jobs.items()} == {"borrowed": "failed", "own": "queued"}

    theirs = await details(client, acme, acme_slug, acme_jobs["theirs"]["job_number"])
    unknown = await details(client, acme, acme_slug, acme_jobs["unknown"]["job_number"])
    borrowed = await details(client, rival, rival_slug, rival_jobs["borrowed"]["job_number"])
    assert theirs["messages"][0]["message"].startswith(
        "Resource class rival/linux is not a resource class of organization acme, nor one this server shares"
    )
    # Whether a class exists in another organization is not told: the same words as for none.
    assert unknown["messages"][0]["message"] == theirs["messages"][0]["message"].replace("rival/linux", "acme/nope")
    assert "acme/linux is not a resource class of organization rival" in borrowed["messages"][0]["message"]
    assert theirs["parallel_runs"] == [] and borrowed["parallel_runs"] == []

    # Each runner gets its own organization's job, and nothing else; `local` serves both.
    assert await depth(client, acme_token, "acme/linux") == 1
    assert await depth(client, rival_token, "rival/linux") == 1
    for token, resource_class, slug in (
        (acme_token, "acme/linux", acme_slug),
        (rival_token, "rival/linux", rival_slug),
    ):
        runner = ProtocolRunner(client, token, resource_class)
        task = await runner.claim()
        assert task is not None and task["job"]["project_slug"] == slug and task["job"]["name"] == "own"
        assert await runner.claim() is None
        await runner.finish(task)
    shared = await local.claim()
    assert shared is not None and shared["job"]["project_slug"] == acme_slug and await local.claim() is None
    await local.finish(shared)

    refusals = await audit_actions(database, "job.refused")
    assert sorted(event["resource_class"] for event in refusals) == ["acme/linux", "acme/nope", "rival/linux"]


async def test_the_claim_path_checks_ownership_whatever_the_queue_says(
    client: httpx.AsyncClient, database: Database, acme: Account, rival: Account, tmp_path: Path
) -> None:
    """A task of rival's put in acme's queue by hand (as a bug could): acme's runner never sees it,
    and the job fails with the refusal's message."""
    await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    token = await runner_token(database, "acme/linux")
    make_repo(tmp_path / "rival", {".circleci/config.yml": config(("sneaky", "local"))})
    slug = await make_project(database, rival, tmp_path / "rival")
    jobs = await trigger(client, rival, slug, 1)
    async with database.writing() as session:
        await session.execute(
            update(Task).where(Task.job_id == uuid.UUID(jobs["sneaky"]["id"])).values(resource_class="acme/linux")
        )
    assert await depth(client, token, "acme/linux") == 1
    assert await ProtocolRunner(client, token, "acme/linux").claim() is None
    job = await details(client, rival, slug, jobs["sneaky"]["job_number"])
    assert job["status"] == "failed" and job["parallel_runs"] == [{"index": 0, "status": "failed"}]
    assert "acme/linux is not a resource class of organization rival" in job["messages"][0]["message"]
    assert await depth(client, token, "acme/linux") == 0


async def test_a_class_deleted_while_jobs_wait(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    """Waiting jobs fail with a message; a task already running finishes (its runner's token is
    gone, so it claims nothing more)."""
    created = await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    token = await runner_token(database, "acme/linux")
    runner = ProtocolRunner(client, token, "acme/linux")
    make_repo(tmp_path / "acme", {".circleci/config.yml": config(("first", "acme/linux"), ("second", "acme/linux"))})
    slug = await make_project(database, acme, tmp_path / "acme")
    jobs = await trigger(client, acme, slug, 2)
    running = await runner.claim()
    assert running is not None
    waiting = next(job for job in jobs.values() if job["id"] != running["job"]["id"])

    deleted = await client.delete(f"/api/v3/runner/resource/{created.json()['id']}/force", headers=cli(acme))
    assert deleted.status_code == 200
    job = await details(client, acme, slug, waiting["job_number"])
    assert job["status"] == "failed"
    assert job["messages"][0]["message"].startswith("Resource class acme/linux was deleted while the job waited")
    claim = await client.post(
        "/api/v3/runner/claim",
        json={"resource_class": "acme/linux", "wait_seconds": 0},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert claim.status_code == 401
    await runner.finish(running)
    assert (await details(client, acme, slug, running["job"]["number"]))["status"] == "success"


async def test_a_revoked_tokens_running_task_finishes_and_its_next_claim_is_refused(
    client: httpx.AsyncClient, database: Database, acme: Account, tmp_path: Path
) -> None:
    await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    minted = await client.post("/api/v3/runner/token", json={"resource_class": "acme/linux"}, headers=cli(acme))
    token = minted.json()
    runner = ProtocolRunner(client, token["token"], "acme/linux")
    make_repo(tmp_path / "acme", {".circleci/config.yml": config(("build", "acme/linux"))})
    slug = await make_project(database, acme, tmp_path / "acme")
    await trigger(client, acme, slug, 1)
    task = await runner.claim()
    assert task is not None

    assert (await client.delete(f"/api/v3/runner/token/{token['id']}", headers=cli(acme))).status_code == 200
    auth = {"Authorization": f"Bearer {token['token']}"}
    for answer in (
        await client.post(
            "/api/v3/runner/claim", json={"resource_class": "acme/linux", "wait_seconds": 0}, headers=auth
        ),
        await client.get("/api/v3/runner/tasks", params={"resource-class": "acme/linux"}, headers=auth),
        await client.get("/api/v3/runner/tasks/running", params={"resource-class": "acme/linux"}, headers=auth),
    ):
        assert answer.status_code == 401
    heartbeat = await runner.call(task, "heartbeat", json={})
    assert heartbeat.status_code == 200 and heartbeat.json()["cancel"] is False
    await runner.finish(task)
    assert (await details(client, acme, slug, task["job"]["number"]))["status"] == "success"
    [revoked] = await audit_actions(database, "runner.token.revoke")
    assert revoked["resource_class"] == "acme/linux"


async def test_an_operator_who_shares_no_class(
    settings: Settings, database: Database, acme: Account, tmp_path: Path
) -> None:
    """`CIRCLET_SHARED_RESOURCE_CLASSES=""`: a job naming no class (so `local`) is refused too."""
    app = create_app(settings.model_copy(update={"shared_resource_classes": ""}))
    make_repo(tmp_path / "acme", {".circleci/config.yml": config(("plain", "medium"))})
    slug = await make_project(database, acme, tmp_path / "acme")
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        jobs = await trigger(client, acme, slug, 1)
        assert jobs["plain"]["status"] == "failed"
        job = await details(client, acme, slug, jobs["plain"]["job_number"])
        assert job["messages"][0]["message"].startswith("Resource class local is not a resource class of")


async def test_a_token_of_a_class_no_organization_owns_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    """A token minted before classes had owners, for a namespace no organization could be found for
    (migration 0007 leaves it unowned): refused, with what to do instead."""
    token = "circlet_rt_" + uuid.uuid4().hex
    async with database.writing() as session:
        session.add(RunnerToken(id=uuid.uuid4(), resource_class="ghost/linux", token_hash=token_hash(token), label=""))
    claim = await client.post(
        "/api/v3/runner/claim",
        json={"resource_class": "ghost/linux", "wait_seconds": 0},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert claim.status_code == 401
    assert "belongs to no organization" in claim.json()["message"]


async def test_deleting_an_organization_takes_its_classes_tokens_and_runners(
    client: httpx.AsyncClient, database: Database, acme: Account
) -> None:
    await client.post("/api/v3/runner/resource", json={"resource_class": "acme/linux"}, headers=cli(acme))
    token = await runner_token(database, "acme/linux")
    auth = {"Authorization": f"Bearer {token}"}
    claim = {"resource_class": "acme/linux", "runner_name": "box", "wait_seconds": 0}
    assert (await client.post("/api/v3/runner/claim", json=claim, headers=auth)).status_code == 204
    assert (await client.delete(f"/api/v2/organization/{acme.org_slug}", headers=acme.headers)).status_code == 202
    assert (await client.post("/api/v3/runner/claim", json=claim, headers=auth)).status_code == 401
    async with database.reading() as session:
        assert await runners.class_by_name(session, "acme/linux") is None
        assert await runners.instances(session, resource_class="acme/linux") == []
