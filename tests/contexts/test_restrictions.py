"""Context restrictions: project, expression and group, validated against the owning organization."""

from __future__ import annotations

import uuid

import httpx
import pytest

from circlet.contexts.expressions import parse_restriction_expression, restriction_allows
from circlet.db.engine import Database
from circlet.db.models import Group, Project
from circlet.db.types import utcnow
from tests.conftest import Account, make_account

API = "/api/v2"


async def add_project(database: Database, org_id: str, name: str) -> uuid.UUID:
    async with database.writing() as session:
        project = Project(
            id=uuid.uuid4(),
            org_id=uuid.UUID(org_id),
            name=name,
            name_key=name.lower(),
            vcs_url="",
            default_branch="main",
            created_at=utcnow(),
        )
        session.add(project)
    return project.id


async def add_group(database: Database, org_id: str, name: str) -> uuid.UUID:
    async with database.writing() as session:
        group = Group(id=uuid.uuid4(), org_id=uuid.UUID(org_id), name=name, description="", created_at=utcnow())
        session.add(group)
    return group.id


@pytest.fixture
async def context_url(client: httpx.AsyncClient, admin: Account) -> str:
    created = await client.post(
        f"{API}/context", json={"name": "guarded", "owner": {"id": admin.org_id}}, headers=admin.headers
    )
    return f"{API}/context/{created.json()['id']}/restrictions"


async def test_project_group_and_expression_restrictions(
    client: httpx.AsyncClient, database: Database, admin: Account, context_url: str
) -> None:
    project_id = await add_project(database, admin.org_id, "app")
    group_id = await add_group(database, admin.org_id, "deployers")
    bodies = [
        {"restriction_type": "project", "restriction_value": str(project_id)},
        {"restriction_type": "group", "restriction_value": str(group_id)},
        {"restriction_type": "expression", "restriction_value": 'pipeline.git.branch == "main"'},
    ]
    created = []
    for body in bodies:
        response = await client.post(context_url, json=body, headers=admin.headers)
        assert response.status_code == 201, response.text
        created.append(response.json())
    assert created[0] == {
        "id": created[0]["id"],
        "name": "app",
        "project_id": str(project_id),
        "restriction_type": "project",
        "restriction_value": str(project_id),
    }
    assert created[1]["name"] == "deployers" and "project_id" not in created[1]

    listed = (await client.get(context_url, headers=admin.headers)).json()
    assert [r["restriction_type"] for r in listed["items"]] == ["project", "group", "expression"]
    assert all(r["context_id"] == context_url.split("/")[-2] for r in listed["items"])

    duplicate = await client.post(context_url, json=bodies[2], headers=admin.headers)
    assert duplicate.status_code == 409

    deleted = await client.delete(f"{context_url}/{created[2]['id']}", headers=admin.headers)
    assert deleted.json() == {"message": "Restriction deleted."}
    assert (await client.delete(f"{context_url}/{created[2]['id']}", headers=admin.headers)).status_code == 404
    bad_id = await client.delete(f"{context_url}/not-a-uuid", headers=admin.headers)
    assert bad_id.status_code == 400


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"restriction_type": "expression", "restriction_value": "pipeline.git.branch =="}, "column 23"),
        ({"restriction_type": "expression", "restriction_value": '(pipeline.git.branch == "a"'}, "invalid expression"),
        ({"restriction_type": "expression", "restriction_value": "pipeline.parameters.deploy"}, "not available"),
        ({"restriction_type": "expression", "restriction_value": "branch == 1"}, "invalid expression"),
        ({"restriction_type": "project", "restriction_value": "not-a-uuid"}, "takes a UUID"),
        ({"restriction_type": "project", "restriction_value": str(uuid.uuid4())}, "no such project"),
        ({"restriction_type": "group", "restriction_value": str(uuid.uuid4())}, "no such group"),
        ({"restriction_type": "planet", "restriction_value": "x"}, "restriction_type"),
        ({"restriction_value": "x"}, "restriction_type: required"),
        ({"restriction_type": "expression"}, "restriction_value: required"),
    ],
)
async def test_invalid_restrictions_are_400(
    client: httpx.AsyncClient, admin: Account, context_url: str, body: dict[str, str], fragment: str
) -> None:
    response = await client.post(context_url, json=body, headers=admin.headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["message"]


async def test_another_orgs_project_cannot_be_named(
    client: httpx.AsyncClient, database: Database, admin: Account, context_url: str
) -> None:
    other = await make_account(database)
    foreign_project = await add_project(database, other.org_id, "theirs")
    response = await client.post(
        context_url,
        json={"restriction_type": "project", "restriction_value": str(foreign_project)},
        headers=admin.headers,
    )
    assert response.status_code == 400 and "no such project" in response.json()["message"]


def test_expression_evaluation() -> None:
    rule = 'pipeline.git.branch == "main" and not (pipeline.trigger_source starts-with "api")'
    parse_restriction_expression(rule)
    assert restriction_allows(rule, {"pipeline.git.branch": "main", "pipeline.trigger_source": "webhook"})
    assert not restriction_allows(rule, {"pipeline.git.branch": "main", "pipeline.trigger_source": "api"})
    assert not restriction_allows(rule, {"pipeline.git.branch": "dev", "pipeline.trigger_source": "webhook"})
    assert restriction_allows("job.ssh.enabled == false", {"job.ssh.enabled": False})
    # A type error at evaluation time denies rather than raising.
    assert not restriction_allows('pipeline.number starts-with "1"', {"pipeline.number": 12})
