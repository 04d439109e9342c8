"""Shared HTTP behaviour: the three auth schemes, errors as JSON, body limits, rate limits."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from circlet.app import create_app
from circlet.settings import Limits, Settings
from tests.conftest import Account

API = "/api/v2"


async def test_three_auth_schemes(client: httpx.AsyncClient, admin: Account) -> None:
    basic = base64.b64encode(f"{admin.token}:".encode()).decode()
    for request in (
        client.get(f"{API}/me", headers={"Circle-Token": admin.token}),
        client.get(f"{API}/me", headers={"Authorization": f"Basic {basic}"}),
        client.get(f"{API}/me", params={"circle-token": admin.token}),
    ):
        response = await request
        assert response.status_code == 200
        assert response.json() == {
            "id": admin.user_id,
            "login": admin.login,
            "name": admin.login,
            "avatar_url": f"http://circlet.test/avatars/{admin.user_id}.svg",
        }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Circle-Token": "circlet_pat_wrong"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b":").decode()},
        {"Authorization": "Bearer something"},
    ],
)
async def test_missing_or_wrong_token_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(f"{API}/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"message"}


async def test_unknown_routes_and_methods_are_json(client: httpx.AsyncClient, admin: Account) -> None:
    missing = await client.get(f"{API}/no-such-thing", headers=admin.headers)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not found."})
    wrong_method = await client.patch(f"{API}/me", headers=admin.headers)
    assert wrong_method.status_code == 405 and wrong_method.json() == {"message": "Method not allowed."}


async def test_every_response_has_a_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert first.json() == {"status": "ok"}
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_served_spec_lists_what_is_implemented(client: httpx.AsyncClient) -> None:
    spec = (await client.get(f"{API}/openapi.json")).json()
    assert spec["servers"] == [{"url": "http://circlet.test/api/v2"}]
    assert set(spec["paths"]["/context"]) >= {"get", "post"}
    assert "get" in spec["paths"]["/me"]
    assert "/owner/{ownerID}/context/{context}/decision" not in spec["paths"]


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    tight = settings.model_copy(
        update={
            "rate_limit_per_minute": 5,
            "limits": Limits(
                request_body_bytes=2048,
                contexts_per_org=2,
                env_vars_per_context=2,
                env_var_value_length=10,
                context_name_length=8,
                env_var_name_length=5,
            ),
        }
    )
    app = create_app(tight)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


async def test_oversized_body_is_413(strict_client: httpx.AsyncClient, admin: Account) -> None:
    response = await strict_client.post(
        f"{API}/context", content=b"x" * 4096, headers={**admin.headers, "content-type": "application/json"}
    )
    assert response.status_code == 413 and "2048 bytes" in response.json()["message"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 1024

    streamed = await strict_client.post(
        f"{API}/context", content=chunks(), headers={**admin.headers, "content-type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_rate_limit_is_429_with_retry_after(strict_client: httpx.AsyncClient, admin: Account) -> None:
    statuses = [(await strict_client.get(f"{API}/me", headers=admin.headers)).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
    limited = await strict_client.get(f"{API}/me", headers=admin.headers)
    assert limited.json() == {"message": "Rate limit exceeded."}
    assert int(limited.headers["retry-after"]) >= 1


async def test_limits_are_400_naming_the_limit(strict_client: httpx.AsyncClient, admin: Account) -> None:
    h = admin.headers
    contexts = []
    for name in ("one", "two", "three"):
        body = {"name": name, "owner": {"id": admin.org_id}}
        contexts.append(await strict_client.post(f"{API}/context", json=body, headers=h))
    third = contexts.pop()
    assert third.status_code == 400 and "already has 2 contexts" in third.json()["message"]
    # This client's rate limit is 5 requests a minute: the checks below use the remaining two.
    url = f"{API}/context/{contexts[0].json()['id']}/environment-variable"
    too_long = await strict_client.put(f"{url}/A", json={"value": "01234567890"}, headers=h)
    assert too_long.status_code == 400 and "longer than 10 characters" in too_long.json()["message"]
    long_name = await strict_client.put(f"{url}/ABCDEF", json={"value": "v"}, headers=h)
    assert long_name.status_code == 400 and "longer than 5 characters" in long_name.json()["message"]


async def test_text_no_database_can_hold_is_400(client: httpx.AsyncClient, admin: Account) -> None:
    for url in (f"{API}/context?owner-slug=gh/%00", f"{API}/context/%00"):
        response = await client.get(url, headers=admin.headers)
        assert (response.status_code, response.json()) == (400, {"message": "The URL must not contain NUL characters."})
    for raw in (b'{"name": "a\\u0000b", "owner": {"id": "%s"}}', b'{"name": "\\ud800", "owner": {"id": "%s"}}'):
        headers = {**admin.headers, "content-type": "application/json"}
        response = await client.post(f"{API}/context", content=raw % admin.org_id.encode(), headers=headers)
        assert response.status_code == 400 and response.json()["message"].startswith("name: Value error")
