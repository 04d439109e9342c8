"""Organizations: creation, deletion with everything under it, the URL orb allow-list, by role."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select

from circlet.db.engine import Database
from circlet.db.models import CheckoutKey, Context, Group, Membership, Project, ProjectEnvVar
from tests.conftest import Account, Team

API = "/api/v2"


async def test_any_user_creates_an_org_and_becomes_its_admin(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        f"{API}/organization", json={"name": "NewCo", "vcs_type": "github"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == "gh/NewCo" and body["vcs_type"] == "github" and body["name"] == "NewCo"
    uuid.UUID(body["id"])
    collaborations = (await client.get(f"{API}/me/collaborations", headers=admin.headers)).json()
    assert "gh/NewCo" in [c["slug"] for c in collaborations]
    project = await client.post(f"{API}/organization/gh/newco/project", json={"name": "x"}, headers=admin.headers)
    assert project.status_code == 200, project.text


@pytest.mark.parametrize(("vcs_type", "prefix"), [("bitbucket", "bb/"), ("circleci", "circleci/")])
async def test_org_slugs_per_vcs(client: httpx.AsyncClient, admin: Account, vcs_type: str, prefix: str) -> None:
    created = await client.post(
        f"{API}/organization", json={"name": "Team-1", "vcs_type": vcs_type}, headers=admin.headers
    )
    body = created.json()
    assert body["slug"] == (f"circleci/{body['id']}" if vcs_type == "circleci" else "bb/Team-1")
    assert body["slug"].startswith(prefix)


async def test_org_names_are_checked_and_unique(client: httpx.AsyncClient, admin: Account) -> None:
    first = await client.post(f"{API}/organization", json={"name": "Dup", "vcs_type": "github"}, headers=admin.headers)
    assert first.status_code == 201
    again = await client.post(f"{API}/organization", json={"name": "dUP", "vcs_type": "github"}, headers=admin.headers)
    assert again.status_code == 409
    other_vcs = await client.post(
        f"{API}/organization", json={"name": "Dup", "vcs_type": "bitbucket"}, headers=admin.headers
    )
    assert other_vcs.status_code == 201
    for body in [
        {"name": "", "vcs_type": "github"},
        {"name": "a/b", "vcs_type": "github"},
        {"name": "has space", "vcs_type": "github"},
        {"name": "ok", "vcs_type": "gitlab"},
        {"name": "ok"},
        {"name": 3, "vcs_type": "github"},
        {"name": " padded ", "vcs_type": "circleci"},
    ]:
        response = await client.post(f"{API}/organization", json=body, headers=admin.headers)
        assert response.status_code == 400, body
        assert set(response.json()) == {"message"}


@pytest.mark.parametrize("form", ["{slug}", "{long}", "{escaped}", "{id}"])
async def test_delete_org_takes_every_slug_form(client: httpx.AsyncClient, admin: Account, form: str) -> None:
    name = admin.org_slug.split("/")[1]
    ref = form.format(slug=admin.org_slug, long=f"github/{name}", escaped=f"gh%2F{name}", id=admin.org_id)
    deleted = await client.delete(f"{API}/organization/{ref}", headers=admin.headers)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json() == {"message": "Organization deleted."}
    assert (await client.get(f"{API}/me/collaborations", headers=admin.headers)).json() == []


async def test_delete_org_removes_everything_under_it(
    client: httpx.AsyncClient, team: Team, database: Database
) -> None:
    admin = team.admin
    project = (
        await client.post(f"{API}/organization/{admin.org_slug}/project", json={"name": "app"}, headers=admin.headers)
    ).json()
    slug = project["slug"]
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "A", "value": "value-1"}, headers=admin.headers)
    await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    await client.post(f"{API}/context", json={"name": "ctx", "owner": {"id": admin.org_id}}, headers=admin.headers)
    await client.post(f"{API}/organizations/{admin.org_id}/groups", json={"name": "g"}, headers=admin.headers)
    await client.post(
        f"{API}/organization/{admin.org_slug}/url-orb-allow-list",
        json={"name": "n", "prefix": "https://example.com/", "auth": "none"},
        headers=admin.headers,
    )
    outsider_project = await client.post(
        f"{API}/organization/{team.outsider.org_slug}/project", json={"name": "kept"}, headers=team.outsider.headers
    )

    deleted = await client.delete(f"{API}/organization/{admin.org_slug}", headers=admin.headers)
    assert deleted.status_code == 202
    org_id = uuid.UUID(admin.org_id)
    async with database.reading() as session:
        for model, column in [
            (Project, Project.org_id),
            (Context, Context.org_id),
            (Group, Group.org_id),
            (Membership, Membership.org_id),
        ]:
            count = await session.execute(select(func.count()).select_from(model).where(column == org_id))
            assert count.scalar_one() == 0, model
        for model, column in [(ProjectEnvVar, ProjectEnvVar.project_id), (CheckoutKey, CheckoutKey.project_id)]:
            count = await session.execute(
                select(func.count()).select_from(model).where(column == uuid.UUID(project["id"]))
            )
            assert count.scalar_one() == 0, model
    kept = await client.get(f"{API}/project/{outsider_project.json()['slug']}", headers=team.outsider.headers)
    assert kept.status_code == 200


@pytest.mark.parametrize(("role", "status"), [("admin", 202), ("member", 403), ("viewer", 403), ("outsider", 404)])
async def test_only_an_org_admin_deletes_it(client: httpx.AsyncClient, team: Team, role: str, status: int) -> None:
    response = await client.delete(f"{API}/organization/{team.admin.org_slug}", headers=team.by_role(role).headers)
    assert response.status_code == status
    assert set(response.json()) == {"message"}


async def test_deleting_an_unknown_org_is_not_found(client: httpx.AsyncClient, admin: Account) -> None:
    for ref in ["gh/nope-nope", str(uuid.uuid4()), "not-a-slug", "gl/x"]:
        assert (await client.delete(f"{API}/organization/{ref}", headers=admin.headers)).status_code == 404


async def test_url_orb_allow_list(client: httpx.AsyncClient, team: Team) -> None:
    admin = team.admin
    url = f"{API}/organization/{admin.org_slug}/url-orb-allow-list"
    entry = {"name": "Public orbs", "prefix": "https://raw.githubusercontent.com/acme/orbs/", "auth": "github-app"}
    created = await client.post(url, json=entry, headers=admin.headers)
    assert created.status_code == 200, created.text
    entry_id = created.json()["id"]
    assert created.json()["message"]
    for role in ["admin", "member", "viewer"]:
        listed = await client.get(url, headers=team.by_role(role).headers)
        assert listed.json() == {"items": [{"id": entry_id, **entry}]}
    assert (await client.get(url, headers=team.outsider.headers)).status_code == 404
    by_id = await client.get(f"{API}/organization/{admin.org_id}/url-orb-allow-list", headers=admin.headers)
    assert len(by_id.json()["items"]) == 1
    for role, status in [("member", 403), ("viewer", 403), ("outsider", 404)]:
        caller = team.by_role(role)
        assert (await client.post(url, json=entry, headers=caller.headers)).status_code == status
        assert (await client.delete(f"{url}/{entry_id}", headers=caller.headers)).status_code == status
    for bad in [
        {**entry, "prefix": "http://insecure/"},
        {**entry, "auth": "basic"},
        {**entry, "prefix": 5},
        {"name": "x"},
        {**entry, "name": ""},
    ]:
        assert (await client.post(url, json=bad, headers=admin.headers)).status_code == 400, bad
    removed = await client.delete(f"{url}/{entry_id}", headers=admin.headers)
    assert removed.status_code == 200 and removed.json()["id"] == entry_id
    assert (await client.delete(f"{url}/{entry_id}", headers=admin.headers)).status_code == 404
    assert (await client.delete(f"{url}/not-a-uuid", headers=admin.headers)).status_code == 404
    assert (await client.get(url, headers=admin.headers)).json() == {"items": []}
