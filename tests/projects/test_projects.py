"""Projects: create both ways, find by every slug form, delete with everything under it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from circlet.db.engine import Database
from circlet.orgs.slugs import parse_project_slug
from circlet.projects import repository as projects
from tests.conftest import Account, Team

API = "/api/v2"


async def create_project(client: httpx.AsyncClient, account: Account, name: str = "app", **extra: str) -> dict:
    response = await client.post(
        f"{API}/organization/{account.org_slug}/project", json={"name": name, **extra}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_create_in_org_reports_the_project(client: httpx.AsyncClient, admin: Account) -> None:
    body = await create_project(client, admin, "app")
    org_name = admin.org_slug.split("/")[1]
    assert body["slug"] == f"gh/{org_name}/app"
    assert body["name"] == "app"
    assert body["organization_id"] == admin.org_id
    assert body["organization_slug"] == admin.org_slug
    assert body["organization_name"] == org_name
    assert body["vcs_info"] == {
        "vcs_url": f"https://github.com/{org_name}/app",
        "provider": "GitHub",
        "default_branch": "main",
    }


async def test_create_records_where_the_code_lives(client: httpx.AsyncClient, admin: Account) -> None:
    url = "ssh://git@git.example.com/acme/local.git"
    body = await create_project(client, admin, "local", vcs_url=url, default_branch="trunk")
    assert body["vcs_info"]["vcs_url"] == url
    assert body["vcs_info"]["default_branch"] == "trunk"


async def test_create_by_slug_answers_with_settings(client: httpx.AsyncClient, admin: Account) -> None:
    org_name = admin.org_slug.split("/")[1]
    response = await client.post(f"{API}/project/github/{org_name}/svc", headers=admin.headers)
    assert response.status_code == 201, response.text
    assert response.json()["advanced"]["set_github_status"] is True
    found = await client.get(f"{API}/project/gh/{org_name}/svc", headers=admin.headers)
    assert found.json()["name"] == "svc"
    again = await client.post(f"{API}/project/github/{org_name}/svc", headers=admin.headers)
    assert again.status_code == 400


async def test_create_by_slug_refuses_standalone_orgs(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(f"{API}/project/circleci/{admin.org_id}/svc", headers=admin.headers)
    assert response.status_code == 405
    assert "message" in response.json()


async def test_duplicate_and_invalid_names(client: httpx.AsyncClient, admin: Account) -> None:
    await create_project(client, admin, "App")
    duplicate = await client.post(
        f"{API}/organization/{admin.org_slug}/project", json={"name": "app"}, headers=admin.headers
    )
    assert duplicate.status_code == 409
    for bad in ["", "a b", "x/y", "..", "a" * 101]:
        response = await client.post(
            f"{API}/organization/{admin.org_slug}/project", json={"name": bad}, headers=admin.headers
        )
        assert response.status_code == 400, bad
        assert set(response.json()) == {"message"}
    missing = await client.post(f"{API}/organization/{admin.org_slug}/project", json={}, headers=admin.headers)
    assert missing.status_code == 400


@pytest.mark.parametrize(
    "template",
    [
        "gh/{org}/{project}",
        "github/{org}/{project}",
        "GH/{ORG}/{PROJECT}",
        "gh%2F{org}%2F{project}",
        "circleci/{org_id}/{project_id}",
    ],
)
async def test_every_slug_form_finds_the_project(client: httpx.AsyncClient, admin: Account, template: str) -> None:
    body = await create_project(client, admin, "Repo")
    org_name = admin.org_slug.split("/")[1]
    slug = template.format(
        org=org_name,
        project="Repo",
        ORG=org_name.upper(),
        PROJECT="REPO",
        org_id=admin.org_id,
        project_id=body["id"],
    )
    response = await client.get(f"{API}/project/{slug}", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == body["id"]


async def test_standalone_org_projects_use_id_slugs(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        f"{API}/organization", json={"name": "Acme Corp", "vcs_type": "circleci"}, headers=admin.headers
    )
    org = created.json()
    body = (
        await client.post(f"{API}/organization/{org['id']}/project", json={"name": "my app"}, headers=admin.headers)
    ).json()
    assert body["slug"] == f"circleci/{org['id']}/{body['id']}"
    assert body["vcs_info"]["provider"] == "CircleCI"
    found = await client.get(f"{API}/project/{body['slug']}", headers=admin.headers)
    assert found.json()["name"] == "my app"


async def test_another_orgs_project_is_not_found(client: httpx.AsyncClient, team: Team) -> None:
    body = await create_project(client, team.admin, "secret")
    slug = body["slug"]
    for path in ["", "/envvar", "/checkout-key", "/settings", "/envvar/X"]:
        response = await client.get(f"{API}/project/{slug}{path}", headers=team.outsider.headers)
        assert response.status_code == 404, path
    missing = await client.get(f"{API}/project/gh/nobody/nothing", headers=team.admin.headers)
    assert missing.status_code == 404


async def test_unknown_slugs_are_not_found(client: httpx.AsyncClient, admin: Account) -> None:
    for slug in ["gl/a/b", "circleci/not-a-uuid/x", "gh/a", "gh/a/b/c/d/e"]:
        response = await client.get(f"{API}/project/{slug}", headers=admin.headers)
        assert response.status_code == 404, slug
        assert set(response.json()) == {"message"}


async def test_delete_removes_everything_under_the_project(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    body = await create_project(client, admin, "doomed")
    slug = body["slug"]
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "A", "value": "secret-1"}, headers=admin.headers)
    await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    await client.patch(f"{API}/project/{slug}/settings", json={"advanced": {"oss": True}}, headers=admin.headers)
    context = (
        await client.post(f"{API}/context", json={"name": "c", "owner": {"id": admin.org_id}}, headers=admin.headers)
    ).json()
    restricted = await client.post(
        f"{API}/context/{context['id']}/restrictions",
        json={"restriction_type": "project", "restriction_value": body["id"]},
        headers=admin.headers,
    )
    assert restricted.status_code == 201, restricted.text

    deleted = await client.delete(f"{API}/project/{slug}", headers=admin.headers)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "Project deleted."}
    assert (await client.get(f"{API}/project/{slug}", headers=admin.headers)).status_code == 404
    restrictions = await client.get(f"{API}/context/{context['id']}/restrictions", headers=admin.headers)
    assert restrictions.json()["items"] == []
    project_id = uuid.UUID(body["id"])
    async with database.reading() as session:
        assert await projects.list_env_vars(session, project_id) == []
        assert await projects.list_checkout_keys(session, project_id) == []
        assert await projects.get_settings(session, project_id) is None


async def test_a_failed_delete_leaves_everything_in_place(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    """The deletes of a project share one transaction: a crash after the first leaves nothing half-done."""
    body = await create_project(client, admin, "survivor")
    slug = body["slug"]
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "A", "value": "secret-1"}, headers=admin.headers)
    parsed = parse_project_slug(*slug.split("/"))
    assert parsed is not None

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with database.writing() as session:
            found = await projects.find_project(session, parsed)
            assert found is not None
            await projects.delete_project(session, found.project.id)
            raise Crash
    response = await client.get(f"{API}/project/{slug}/envvar", headers=admin.headers)
    assert [item["name"] for item in response.json()["items"]] == ["A"]


async def test_slug_lookup_uses_indexes(database: Database, database_url: str) -> None:
    """Resolving a slug costs the same with 10 projects as with 10,000: two unique-index searches."""
    if not database_url.startswith("sqlite"):
        pytest.skip("the plan is read through SQLite's EXPLAIN QUERY PLAN")
    from sqlalchemy import text

    from circlet.orgs.slugs import OrgSlug, ProjectSlug

    query = projects.project_by_slug(ProjectSlug(OrgSlug("github", name="Acme"), name="App"))
    async with database.reading() as session:
        compiled = query.compile(session.bind, compile_kwargs={"literal_binds": True})
        plan = (await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))).all()
    steps = [row[-1] for row in plan]
    assert len(steps) == 2 and all(step.startswith("SEARCH") for step in steps), steps
    assert "(vcs_type=? AND name_key=?)" in steps[0] and "(org_id=? AND name_key=?)" in steps[1], steps


async def test_text_no_database_can_hold_is_refused(client: httpx.AsyncClient, admin: Account) -> None:
    """NUL characters (PostgreSQL text cannot hold them) and lone surrogates are 400, never 500."""
    slug = (await create_project(client, admin, "app"))["slug"]
    for path, body in [
        (f"/organization/{admin.org_slug}/project", {"name": "a\u0000b"}),
        (f"/organization/{admin.org_slug}/project", {"name": "ab", "vcs_url": "x\u0000y"}),
        (f"/organizations/{admin.org_id}/groups", {"name": "a\u0000b"}),
        (f"/organizations/{admin.org_id}/groups", {"name": "ab", "description": "\ud800"}),
        ("/organization", {"name": "a\u0000b", "vcs_type": "circleci"}),
        (
            f"/organization/{admin.org_id}/url-orb-allow-list",
            {"name": "\u0000", "prefix": "https://x/", "auth": "none"},
        ),
        (f"/project/{slug}/envvar", {"name": "A", "value": "\ud800"}),
        (f"/project/{slug}/envvar", {"name": "A", "value": "a\u0000b"}),
    ]:
        raw = json.dumps(body)  # escapes a lone surrogate, which httpx would refuse to encode
        headers = {**admin.headers, "Content-Type": "application/json"}
        response = await client.post(API + path, content=raw, headers=headers)
        assert response.status_code == 400, (path, body, response.text)
        assert set(response.json()) == {"message"}
