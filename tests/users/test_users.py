"""The User tag: who am I, which organizations I collaborate in, and other users I may see."""

from __future__ import annotations

import uuid

import httpx

from circlet.db.engine import Database
from tests.conftest import Account, Team, make_account

API = "/api/v2"


async def test_me(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{API}/me", headers=admin.headers)
    assert response.json() == {
        "id": admin.user_id,
        "login": admin.login,
        "name": admin.login,
        "avatar_url": f"http://circlet.test/avatars/{admin.user_id}.svg",
    }


async def test_collaborations_list_every_org_of_the_user(client: httpx.AsyncClient, database: Database) -> None:
    login = f"user-{uuid.uuid4().hex[:8]}"
    first = await make_account(database, org="alpha-" + login, login=login, role="viewer")
    second = await make_account(database, org="bb/beta-" + login, login=login, role="member")
    await make_account(database, org="unrelated-" + login, role="admin")
    response = await client.get(f"{API}/me/collaborations", headers=first.headers)
    assert response.status_code == 200
    assert response.json() == [
        {"id": first.org_id, "vcs-type": "github", "name": "alpha-" + login, "avatar_url": "", "slug": first.org_slug},
        {
            "id": second.org_id,
            "vcs-type": "bitbucket",
            "name": "beta-" + login,
            "avatar_url": "",
            "slug": f"bb/beta-{login}",
        },
    ]


async def test_users_see_themselves_and_people_they_share_an_org_with(client: httpx.AsyncClient, team: Team) -> None:
    me = await client.get(f"{API}/user/{team.viewer.user_id}", headers=team.viewer.headers)
    assert me.json()["login"] == team.viewer.login
    colleague = await client.get(f"{API}/user/{team.admin.user_id}", headers=team.viewer.headers)
    assert colleague.status_code == 200
    assert set(colleague.json()) == {"id", "login", "name", "avatar_url"}
    stranger = await client.get(f"{API}/user/{team.outsider.user_id}", headers=team.viewer.headers)
    assert stranger.status_code == 404
    for missing in [str(uuid.uuid4()), "not-a-uuid"]:
        response = await client.get(f"{API}/user/{missing}", headers=team.viewer.headers)
        assert response.status_code == 404 and set(response.json()) == {"message"}


async def test_unauthenticated_calls_are_refused(client: httpx.AsyncClient) -> None:
    for path in ["/me", "/me/collaborations", f"/user/{uuid.uuid4()}"]:
        assert (await client.get(API + path)).status_code == 401


async def test_every_user_has_an_avatar_circlet_serves(client: httpx.AsyncClient, team: Team) -> None:
    me = (await client.get(f"{API}/me", headers=team.viewer.headers)).json()
    colleague = (await client.get(f"{API}/user/{team.admin.user_id}", headers=team.viewer.headers)).json()
    assert colleague["avatar_url"] == f"http://circlet.test/avatars/{team.admin.user_id}.svg"

    first = await client.get(me["avatar_url"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/svg+xml"
    assert first.content.startswith(b"<svg ") and b"<script" not in first.content
    assert first.headers["cache-control"] == "public, max-age=86400"
    assert first.headers["content-security-policy"] == "default-src 'none'"
    assert (await client.get(me["avatar_url"])).content == first.content
    other = await client.get(colleague["avatar_url"])
    assert other.content != first.content and other.headers["etag"] != first.headers["etag"]

    revalidated = await client.get(me["avatar_url"], headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304 and revalidated.content == b""
    for bad in ("/avatars/..%2Fx.svg", "/avatars/%3Cscript%3E.svg", "/avatars/" + "a" * 65 + ".svg"):
        refused = await client.get(bad)
        assert refused.status_code == 404 and set(refused.json()) == {"message"}


async def test_avatar_urls_use_the_configured_public_url(client: httpx.AsyncClient, admin: Account) -> None:
    client.app.state.settings.public_url = "https://ci.example.com/"  # type: ignore[attr-defined]
    me = (await client.get(f"{API}/me", headers=admin.headers)).json()
    assert me["avatar_url"] == f"https://ci.example.com/avatars/{admin.user_id}.svg"
