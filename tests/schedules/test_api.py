"""The Schedule tag through the real app: shapes, validation, pagination, and who may do what."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import Database
from tests.conftest import Account, Team, make_account
from tests.schedules.helpers import project_with_config

CONFIG = (
    "version: 2.1\njobs: {build: {docker: [{image: x}], steps: [{run: echo}]}}\nworkflows: {main: {jobs: [build]}}\n"
)
NIGHTLY = {"per-hour": 1, "hours-of-day": [3], "days-of-week": ["MON", "TUE", "WED", "THU", "FRI"]}


def schedule(name: str = "nightly", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "timetable": NIGHTLY,
        "attribution-actor": "current",
        "parameters": {"branch": "main"},
        **extra,
    }


async def project_of(database: Database, account: Account, tmp_path: Path) -> str:
    return await project_with_config(database, account, tmp_path, CONFIG)


async def test_create_read_list_update_delete(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_of(database, admin, tmp_path)
    body = schedule(description="every weekday", parameters={"branch": "main", "deploy": True, "level": 3})
    response = await client.post(f"/api/v2/project/{slug}/schedule", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id",
        "name",
        "description",
        "timetable",
        "project-slug",
        "actor",
        "created-at",
        "updated-at",
        "parameters",
    }
    assert created["name"] == "nightly" and created["description"] == "every weekday"
    assert created["timetable"] == NIGHTLY
    assert created["project-slug"] == slug
    assert created["parameters"] == {"branch": "main", "deploy": True, "level": 3}
    assert created["actor"]["login"] == admin.login and created["actor"]["id"] == admin.user_id
    assert created["actor"]["avatar_url"].startswith("http://circlet.test/avatars/")
    assert created["created-at"].endswith("Z") and created["created-at"] == created["updated-at"]

    got = await client.get(f"/api/v2/schedule/{created['id']}", headers=admin.headers)
    assert got.status_code == 200 and got.json() == created
    listed = await client.get(f"/api/v2/project/{slug}/schedule", headers=admin.headers)
    assert listed.json() == {"items": [created], "next_page_token": None}

    change = {"timetable": {"per-hour": 2, "days-of-month": [1, 15]}, "description": None, "name": "twice"}
    updated = await client.patch(f"/api/v2/schedule/{created['id']}", json=change, headers=admin.headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["timetable"] == {"per-hour": 2, "hours-of-day": [3], "days-of-month": [1, 15]}
    assert updated.json()["description"] is None and updated.json()["name"] == "twice"
    assert updated.json()["parameters"] == created["parameters"]

    deleted = await client.delete(f"/api/v2/schedule/{created['id']}", headers=admin.headers)
    assert deleted.status_code == 200 and deleted.json() == {"message": "Schedule deleted."}
    gone = await client.get(f"/api/v2/schedule/{created['id']}", headers=admin.headers)
    assert gone.status_code == 404 and gone.json() == {"message": "Schedule not found."}


async def test_the_system_actor(client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path) -> None:
    slug = await project_of(database, admin, tmp_path)
    body = schedule(**{"attribution-actor": "system"})
    created = (await client.post(f"/api/v2/project/{slug}/schedule", json=body, headers=admin.headers)).json()
    assert created["actor"]["login"] == "system-actor" and created["actor"]["name"] == "Scheduled"
    other = (
        await client.post(f"/api/v2/project/{slug}/schedule", json={**body, "name": "second"}, headers=admin.headers)
    ).json()
    assert other["actor"] == created["actor"]  # one built-in actor
    back = await client.patch(
        f"/api/v2/schedule/{created['id']}", json={"attribution-actor": "current"}, headers=admin.headers
    )
    assert back.json()["actor"]["login"] == admin.login


REFUSED = [
    ({"timetable": {**NIGHTLY, "per-hour": 0}}, "per-hour"),
    ({"timetable": {**NIGHTLY, "per-hour": 61}}, "per-hour"),
    ({"timetable": {**NIGHTLY, "hours-of-day": [25]}}, "hours-of-day"),
    ({"timetable": {**NIGHTLY, "days-of-month": [1]}}, "mutually exclusive"),
    ({"timetable": {**NIGHTLY, "days-of-week": ["MONDAY"]}}, "days-of-week"),
    ({"timetable": {"per_hour": 1, "hours_of_day": [1], "days_of_week": ["MON"]}}, "spells it"),
    ({"parameters": {"deploy": True}}, "branch or tag"),
    ({"parameters": {"branch": "main", "tag": "v1"}}, "mutually exclusive"),
    ({"parameters": {"branch": 3}}, "parameters.branch"),
    ({"parameters": {"branch": "main", "x": 1.5}}, "parameters"),
    ({"parameters": {"branch": "main", "x": None}}, "parameters"),
    ({"attribution-actor": "someone"}, "attribution-actor"),
    ({"name": ""}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"description": "x" * 2001}, "description"),
    ({"unexpected": 1}, "unexpected"),
]


@pytest.mark.parametrize(("change", "named"), REFUSED)
async def test_refusals_are_400_and_name_the_field(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    slug = await project_of(database, admin, tmp_path)
    response = await client.post(
        f"/api/v2/project/{slug}/schedule", json={**schedule(), **change}, headers=admin.headers
    )
    assert response.status_code == 400, response.text
    assert named in response.json()["message"]
    listed = await client.get(f"/api/v2/project/{slug}/schedule", headers=admin.headers)
    assert listed.json()["items"] == []


async def test_names_are_unique_in_a_project(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_of(database, admin, tmp_path)
    first = await client.post(f"/api/v2/project/{slug}/schedule", json=schedule(), headers=admin.headers)
    again = await client.post(f"/api/v2/project/{slug}/schedule", json=schedule(), headers=admin.headers)
    assert first.status_code == 201 and again.status_code == 409
    assert "already exists" in again.json()["message"]
    second = await client.post(f"/api/v2/project/{slug}/schedule", json=schedule("other"), headers=admin.headers)
    renamed = await client.patch(
        f"/api/v2/schedule/{second.json()['id']}", json={"name": "nightly"}, headers=admin.headers
    )
    assert renamed.status_code == 409


async def test_a_patch_is_checked_as_a_create_is(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_of(database, admin, tmp_path)
    created = (await client.post(f"/api/v2/project/{slug}/schedule", json=schedule(), headers=admin.headers)).json()
    for change in (
        {"timetable": {"days-of-month": [31], "months": ["FEB"]}},
        {"timetable": {"per-hour": 0}},
        {"parameters": {}},
        {"name": " padded "},
    ):
        response = await client.patch(f"/api/v2/schedule/{created['id']}", json=change, headers=admin.headers)
        assert response.status_code == 400, (change, response.text)
    unchanged = (await client.get(f"/api/v2/schedule/{created['id']}", headers=admin.headers)).json()
    assert unchanged == created


async def test_pages(client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path) -> None:
    slug = await project_of(database, admin, tmp_path)
    for n in range(23):
        response = await client.post(f"/api/v2/project/{slug}/schedule", json=schedule(f"s{n}"), headers=admin.headers)
        assert response.status_code == 201
    first = (await client.get(f"/api/v2/project/{slug}/schedule", headers=admin.headers)).json()
    assert len(first["items"]) == 20 and first["next_page_token"]
    second = (
        await client.get(
            f"/api/v2/project/{slug}/schedule", params={"page-token": first["next_page_token"]}, headers=admin.headers
        )
    ).json()
    assert len(second["items"]) == 3 and second["next_page_token"] is None
    names = [item["name"] for item in first["items"] + second["items"]]
    assert sorted(names) == sorted(f"s{n}" for n in range(23))
    bad = await client.get(f"/api/v2/project/{slug}/schedule", params={"page-token": "nonsense"}, headers=admin.headers)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [("admin", 200, 200), ("member", 200, 403), ("viewer", 200, 403), ("outsider", 404, 404)],
)
async def test_roles(
    client: httpx.AsyncClient,
    database: Database,
    team: Team,
    tmp_path: Path,
    role: str,
    read: int,
    write: int,
) -> None:
    slug = await project_of(database, team.admin, tmp_path)
    created = (
        await client.post(f"/api/v2/project/{slug}/schedule", json=schedule(), headers=team.admin.headers)
    ).json()
    caller = team.by_role(role).headers
    assert (await client.get(f"/api/v2/schedule/{created['id']}", headers=caller)).status_code == read
    assert (await client.get(f"/api/v2/project/{slug}/schedule", headers=caller)).status_code == read
    create = await client.post(f"/api/v2/project/{slug}/schedule", json=schedule("mine"), headers=caller)
    assert create.status_code == (201 if write == 200 else write)
    patch = await client.patch(f"/api/v2/schedule/{created['id']}", json={"description": "x"}, headers=caller)
    assert patch.status_code == write
    for response in (create, patch):
        assert "message" in response.json() or response.status_code < 300
    delete = await client.delete(f"/api/v2/schedule/{created['id']}", headers=caller)
    assert delete.status_code == write


async def test_unknown_and_malformed_ids_and_no_token(
    client: httpx.AsyncClient, database: Database, admin: Account
) -> None:
    assert (await client.get(f"/api/v2/schedule/{uuid.uuid4()}", headers=admin.headers)).status_code == 404
    assert (await client.get("/api/v2/schedule/not-a-uuid", headers=admin.headers)).status_code == 400
    assert (await client.get(f"/api/v2/schedule/{uuid.uuid4()}")).status_code == 401
    missing = await client.get("/api/v2/project/gh/nowhere/nothing/schedule", headers=admin.headers)
    assert missing.status_code == 404


async def test_a_person_with_the_system_actors_login_blocks_it(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    await make_account(database, org=admin.org_slug.split("/")[-1], login="System-Actor", role="member")
    slug = await project_of(database, admin, tmp_path)
    body = schedule(**{"attribution-actor": "system"})
    response = await client.post(f"/api/v2/project/{slug}/schedule", json=body, headers=admin.headers)
    assert response.status_code == 409 and "system-actor" in response.json()["message"]
