"""Every Project operation against every role: viewers and members read, admins write, outsiders 404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Team

API = "/api/v2"
READ = {"admin": 200, "member": 200, "viewer": 200, "outsider": 404}


def write(status: int) -> dict[str, int]:
    return {"admin": status, "member": 403, "viewer": 403, "outsider": 404}


async def seeded_project(client: httpx.AsyncClient, team: Team) -> dict[str, str]:
    admin = team.admin
    created = await client.post(
        f"{API}/organization/{admin.org_slug}/project", json={"name": "app"}, headers=admin.headers
    )
    slug = created.json()["slug"]
    await client.post(f"{API}/project/{slug}/envvar", json={"name": "SEEDED", "value": "v4lue"}, headers=admin.headers)
    key = await client.post(f"{API}/project/{slug}/checkout-key", json={"type": "deploy-key"}, headers=admin.headers)
    org_name = admin.org_slug.split("/")[1]
    return {"slug": slug, "org": admin.org_slug, "org_name": org_name, "fingerprint": key.json()["fingerprint"]}


# (method, path template, body, expected status by role)
OPERATIONS: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/project/{slug}", None, READ),
    ("GET", "/project/{slug}/settings", None, READ),
    ("PATCH", "/project/{slug}/settings", {"advanced": {"oss": True}}, write(200)),
    ("GET", "/project/{slug}/envvar", None, READ),
    ("GET", "/project/{slug}/envvar/SEEDED", None, READ),
    ("POST", "/project/{slug}/envvar", {"name": "NEW", "value": "value-1234"}, write(201)),
    ("DELETE", "/project/{slug}/envvar/SEEDED", None, write(200)),
    ("GET", "/project/{slug}/checkout-key", None, READ),
    ("GET", "/project/{slug}/checkout-key/{fingerprint}", None, READ),
    ("POST", "/project/{slug}/checkout-key", {"type": "deploy-key"}, write(201)),
    ("DELETE", "/project/{slug}/checkout-key/{fingerprint}", None, write(200)),
    ("POST", "/organization/{org}/project", {"name": "other"}, write(200)),
    ("POST", "/project/gh/{org_name}/created", None, write(201)),
    ("DELETE", "/project/{slug}", None, write(200)),
]


@pytest.mark.parametrize("role", ["admin", "member", "viewer", "outsider"])
@pytest.mark.parametrize(
    ("method", "template", "body", "expected"), OPERATIONS, ids=[f"{m} {p}" for m, p, _, _ in OPERATIONS]
)
async def test_role_can_or_cannot(
    client: httpx.AsyncClient, team: Team, role: str, method: str, template: str, body: Any, expected: dict[str, int]
) -> None:
    seeded = await seeded_project(client, team)
    caller = team.by_role(role)
    response = await client.request(method, API + template.format(**seeded), json=body, headers=caller.headers)
    assert response.status_code == expected[role], response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"message"}
