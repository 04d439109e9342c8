"""Advanced project settings: CircleCI's defaults, partial updates, strict bodies."""

from __future__ import annotations

import uuid

import httpx

from circlet.db.engine import Database
from circlet.projects import repository as projects
from circlet.projects.service import settings_values
from tests.conftest import Account

API = "/api/v2"
DEFAULTS = {
    "autocancel_builds": False,
    "build_fork_prs": False,
    "build_prs_only": False,
    "disable_ssh": False,
    "forks_receive_secret_env_vars": False,
    "oss": False,
    "set_github_status": True,
    "setup_workflows": False,
    "write_settings_requires_admin": False,
    "pr_only_branch_overrides": [],
}


async def test_settings_start_at_defaults_and_patch_partially(
    client: httpx.AsyncClient, admin: Account, database: Database
) -> None:
    created = await client.post(
        f"{API}/organization/{admin.org_slug}/project", json={"name": "app"}, headers=admin.headers
    )
    slug = created.json()["slug"]
    settings_url = f"{API}/project/{slug}/settings"
    assert (await client.get(settings_url, headers=admin.headers)).json() == {"advanced": DEFAULTS}

    patch = {"advanced": {"autocancel_builds": True, "disable_ssh": True, "pr_only_branch_overrides": ["main"]}}
    patched = await client.patch(settings_url, json=patch, headers=admin.headers)
    assert patched.status_code == 200, patched.text
    expected = {**DEFAULTS, **patch["advanced"]}
    assert patched.json() == {"advanced": expected}
    second = await client.patch(settings_url, json={"advanced": {"oss": True}}, headers=admin.headers)
    assert second.json()["advanced"] == {**expected, "oss": True}
    assert (await client.get(settings_url, headers=admin.headers)).json()["advanced"] == {**expected, "oss": True}
    unchanged = await client.patch(settings_url, json={}, headers=admin.headers)
    assert unchanged.json()["advanced"]["oss"] is True

    # What the engine reads.
    async with database.reading() as session:
        stored = settings_values(await projects.get_settings(session, uuid.UUID(created.json()["id"])))
    assert stored["autocancel_builds"] is True and stored["pr_only_branch_overrides"] == ["main"]


async def test_settings_bodies_are_strict(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        f"{API}/organization/{admin.org_slug}/project", json={"name": "app"}, headers=admin.headers
    )
    settings_url = f"{API}/project/{created.json()['slug']}/settings"
    for body in [
        {"advanced": {"oss": "yes"}},
        {"advanced": {"unknown": True}},
        {"other": {}},
        {"advanced": {"pr_only_branch_overrides": "main"}},
        [],
    ]:
        response = await client.patch(settings_url, json=body, headers=admin.headers)
        assert response.status_code == 400, body
        assert set(response.json()) == {"message"}
    no_body = await client.patch(settings_url, headers=admin.headers)
    assert no_body.status_code == 400


async def test_settings_of_unknown_projects_are_not_found(client: httpx.AsyncClient, admin: Account) -> None:
    for slug in ["gh/nobody/nothing", "gitlab/a/b", "circleci/x/y"]:
        response = await client.get(f"{API}/project/{slug}/settings", headers=admin.headers)
        assert response.status_code == 404, slug
