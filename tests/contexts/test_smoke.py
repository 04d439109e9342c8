from __future__ import annotations

import httpx

from tests.conftest import Account


async def test_create_and_list(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        "/api/v2/context", json={"name": "prod", "owner": {"slug": admin.org_slug}}, headers=admin.headers
    )
    assert created.status_code == 200, created.text
    listed = await client.get(f"/api/v2/context?owner-id={admin.org_id}", headers=admin.headers)
    assert [c["name"] for c in listed.json()["items"]] == ["prod"]
