"""Every role against every Context operation (the table in docs/compatibility.md)."""

from __future__ import annotations

import httpx
import pytest

from circlet.db.engine import Database
from tests.conftest import Account, make_account

API = "/api/v2"
READS = {"list", "get", "list_env", "list_restrictions"}
WRITES = {"create", "put_env", "delete_env", "create_restriction", "delete_restriction", "delete"}


async def call(client: httpx.AsyncClient, operation: str, account: Account, ids: dict[str, str]) -> httpx.Response:
    base = f"{API}/context/{ids['context']}"
    h = account.headers
    requests = {
        "list": lambda: client.get(f"{API}/context", params={"owner-id": account.org_id}, headers=h),
        "get": lambda: client.get(base, headers=h),
        "list_env": lambda: client.get(f"{base}/environment-variable", headers=h),
        "list_restrictions": lambda: client.get(f"{base}/restrictions", headers=h),
        "create": lambda: client.post(
            f"{API}/context", json={"name": "new", "owner": {"id": account.org_id}}, headers=h
        ),
        "put_env": lambda: client.put(f"{base}/environment-variable/NEW", json={"value": "v"}, headers=h),
        "delete_env": lambda: client.delete(f"{base}/environment-variable/EXISTING", headers=h),
        "create_restriction": lambda: client.post(
            f"{base}/restrictions",
            json={"restriction_type": "expression", "restriction_value": 'pipeline.git.branch == "x"'},
            headers=h,
        ),
        "delete_restriction": lambda: client.delete(f"{base}/restrictions/{ids['restriction']}", headers=h),
        "delete": lambda: client.delete(base, headers=h),
    }
    return await requests[operation]()


@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
@pytest.mark.parametrize("operation", sorted(READS | WRITES))
async def test_role_matrix(client: httpx.AsyncClient, database: Database, role: str, operation: str) -> None:
    owner = await make_account(database, role="admin")
    caller = await make_account(database, org=owner.org_slug, role=role)
    body = {"name": "shared", "owner": {"id": owner.org_id}}
    context = (await client.post(f"{API}/context", json=body, headers=owner.headers)).json()
    await client.put(
        f"{API}/context/{context['id']}/environment-variable/EXISTING", json={"value": "v"}, headers=owner.headers
    )
    restriction = (
        await client.post(
            f"{API}/context/{context['id']}/restrictions",
            json={"restriction_type": "expression", "restriction_value": "true"},
            headers=owner.headers,
        )
    ).json()
    response = await call(client, operation, caller, {"context": context["id"], "restriction": restriction["id"]})
    if operation in READS or role == "admin":
        assert response.status_code in (200, 201), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["message"].startswith("Permission denied")
