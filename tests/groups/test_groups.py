"""The Groups tag: members of every role read, admins create and delete, outsiders 404."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import Account, Team

API = "/api/v2"


async def create_group(client: httpx.AsyncClient, account: Account, name: str, description: str = "") -> dict:
    response = await client.post(
        f"{API}/organizations/{account.org_id}/groups",
        json={"name": name, "description": description},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_create_get_list_delete(client: httpx.AsyncClient, admin: Account) -> None:
    group = await create_group(client, admin, "Editors", "Edit things")
    assert set(group) == {"id", "name", "description"}
    assert group["name"] == "Editors" and group["description"] == "Edit things"
    url = f"{API}/organizations/{admin.org_id}/groups"
    assert (await client.get(f"{url}/{group['id']}", headers=admin.headers)).json() == group
    listed = (await client.get(url, headers=admin.headers)).json()
    assert listed == {"items": [group], "next_page_token": None, "total_count": 1}
    deleted = await client.delete(f"{url}/{group['id']}", headers=admin.headers)
    assert deleted.json() == {"message": "Group deleted."}
    assert (await client.get(f"{url}/{group['id']}", headers=admin.headers)).status_code == 404
    assert (await client.delete(f"{url}/{group['id']}", headers=admin.headers)).status_code == 404


async def test_pages(client: httpx.AsyncClient, admin: Account) -> None:
    names = [f"g{i:02d}" for i in range(7)]
    for name in names:
        await create_group(client, admin, name)
    url = f"{API}/organizations/{admin.org_id}/groups"
    seen: list[str] = []
    token = None
    while True:
        params = {"limit": "3", **({"page-token": token} if token else {})}
        page = (await client.get(url, params=params, headers=admin.headers)).json()
        seen += [g["name"] for g in page["items"]]
        assert page["total_count"] == 7
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == names
    bad = await client.get(url, params={"page-token": "garbage"}, headers=admin.headers)
    assert bad.status_code == 400
    at_least_one = await client.get(url, params={"limit": "0"}, headers=admin.headers)
    assert len(at_least_one.json()["items"]) == 1


async def test_names_are_checked_and_unique(client: httpx.AsyncClient, admin: Account) -> None:
    await create_group(client, admin, "Ops")
    url = f"{API}/organizations/{admin.org_id}/groups"
    duplicate = await client.post(url, json={"name": "Ops"}, headers=admin.headers)
    assert duplicate.status_code == 409
    assert duplicate.json() == {"message": "Failed to create group, group Ops already exists."}
    for body in [{}, {"name": ""}, {"name": " x "}, {"name": "x", "extra": 1}, {"name": 5}, {"name": "x" * 256}]:
        response = await client.post(url, json=body, headers=admin.headers)
        assert response.status_code == 400, body


@pytest.mark.parametrize("role", ["admin", "member", "viewer", "outsider"])
async def test_roles(client: httpx.AsyncClient, team: Team, role: str) -> None:
    group = await create_group(client, team.admin, "Readers")
    caller = team.by_role(role)
    url = f"{API}/organizations/{team.admin.org_id}/groups"
    read = 404 if role == "outsider" else 200
    write = {"admin": 201, "member": 403, "viewer": 403, "outsider": 404}[role]
    assert (await client.get(url, headers=caller.headers)).status_code == read
    assert (await client.get(f"{url}/{group['id']}", headers=caller.headers)).status_code == read
    assert (await client.post(url, json={"name": "New"}, headers=caller.headers)).status_code == write
    deleted = await client.delete(f"{url}/{group['id']}", headers=caller.headers)
    assert deleted.status_code == (200 if write == 201 else write)


async def test_another_orgs_group_is_not_found(client: httpx.AsyncClient, team: Team) -> None:
    group = await create_group(client, team.outsider, "Theirs")
    mine = f"{API}/organizations/{team.admin.org_id}/groups/{group['id']}"
    assert (await client.get(mine, headers=team.admin.headers)).status_code == 404
    for org_id in ["not-a-uuid", str(uuid.uuid4())]:
        response = await client.get(f"{API}/organizations/{org_id}/groups", headers=team.admin.headers)
        assert response.status_code == 404


async def test_deleting_a_group_removes_its_context_restrictions(client: httpx.AsyncClient, admin: Account) -> None:
    group = await create_group(client, admin, "Deployers")
    context = (
        await client.post(f"{API}/context", json={"name": "prod", "owner": {"id": admin.org_id}}, headers=admin.headers)
    ).json()
    restricted = await client.post(
        f"{API}/context/{context['id']}/restrictions",
        json={"restriction_type": "group", "restriction_value": group["id"]},
        headers=admin.headers,
    )
    assert restricted.status_code == 201, restricted.text
    await client.delete(f"{API}/organizations/{admin.org_id}/groups/{group['id']}", headers=admin.headers)
    listed = await client.get(f"{API}/context/{context['id']}/restrictions", headers=admin.headers)
    assert listed.json()["items"] == []
