"""The hot routes answered ahead of the middleware stack (circlet.http.hot_path): the same answers,
headers and access-log lines as through FastAPI's stack, for good requests and for every error."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from circlet.app import create_app
from circlet.http.hot_path import HotRoutesApp
from circlet.projects.service import ProjectService
from circlet.settings import Limits, Settings
from tests.conftest import Account, make_account

API = "/api/v2"
BODY_LIMIT = 2048


class Apps:
    """Two apps on one database: ``hot`` answers its hot routes itself, ``plain`` sends every request
    through FastAPI's stack. ``stack_calls`` counts the requests that reached the hot app's stack."""

    def __init__(self, hot: HotRoutesApp, plain: HotRoutesApp):
        self.hot, self.plain = hot, plain
        self.stack_calls = 0
        stack = hot.build_middleware_stack()

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            self.stack_calls += scope["type"] == "http"
            await stack(scope, receive, send)

        hot.middleware_stack = counted

    def clients(self) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        return tuple(  # type: ignore[return-value]
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://circlet.test"
            )
            for app in (self.hot, self.plain)
        )


@pytest.fixture
async def apps(settings: Settings) -> AsyncIterator[Apps]:
    limited = settings.model_copy(update={"limits": Limits(request_body_bytes=BODY_LIMIT)})
    hot, plain = create_app(limited), create_app(limited)
    assert isinstance(hot, HotRoutesApp) and isinstance(plain, HotRoutesApp)
    async with hot.router.lifespan_context(hot), plain.router.lifespan_context(plain):
        assert hot.hot_routes, "the lifespan enables the hot routes"
        plain.hot_routes = ()
        yield Apps(hot, plain)


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, with the request id (random) checked for shape and left out."""
    request_ids = response.headers.get_list("x-request-id")
    assert len(request_ids) == 1 and len(request_ids[0]) == 32, response.headers
    headers = [(name, value) for name, value in response.headers.multi_items() if name != "x-request-id"]
    return response.status_code, response.content, headers


async def answer_both(
    apps: Apps, method: str, url: str, *, expect_hot: bool, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    hot_client, plain_client = apps.clients()
    async with hot_client, plain_client:
        before = apps.stack_calls
        hot = await hot_client.request(method, url, **kwargs)
        assert (apps.stack_calls == before) is expect_hot, (method, url, "hot" if expect_hot else "stack")
        plain = await plain_client.request(method, url, **kwargs)
    assert comparable(hot) == comparable(plain), (method, url, hot.content, plain.content)
    return hot, plain


async def test_hot_routes_answer_as_the_stack_does(apps: Apps, database: Any, admin: Account) -> None:
    outsider = await make_account(database)
    viewer = await make_account(database, org=admin.org_slug.split("/")[1], role="viewer")
    h = admin.headers
    hot_client, _ = apps.clients()
    async with hot_client:
        context = (
            await hot_client.post(f"{API}/context", json={"name": "hot", "owner": {"id": admin.org_id}}, headers=h)
        ).json()["id"]
        created = await hot_client.post(
            f"{API}/organization/{admin.org_slug}/project",
            json={"name": "app", "vcs_url": "https://git.example.com/acme/app.git", "default_branch": "main"},
            headers=h,
        )
        assert created.status_code < 300, created.text
        for name in ("ONE", "TWO"):
            added = await hot_client.post(
                f"{API}/project/{admin.org_slug}/app/envvar", json={"name": name, "value": f"{name}-value"}, headers=h
            )
            assert added.status_code == 201
        for i in range(25):
            await hot_client.post(f"{API}/context", json={"name": f"c{i}", "owner": {"id": admin.org_id}}, headers=h)
        first_page = (await hot_client.get(f"{API}/context?owner-id={admin.org_id}", headers=h)).json()
    next_token = first_page["next_page_token"]
    assert next_token
    basic = {"Authorization": "Basic " + base64.b64encode(f"{admin.token}:".encode()).decode()}
    project = f"{API}/project/{admin.org_slug}/app"
    hot_gets: list[tuple[str, dict[str, str]]] = [
        (f"{API}/me", h),
        (f"{API}/me", basic),
        (f"{API}/me?circle-token={admin.token}", {}),
        (f"{API}/me", {}),
        (f"{API}/me", {"Circle-Token": "circlet_pat_nope"}),
        (f"{API}/me", {"Authorization": "Basic !!!"}),
        (f"{API}/me/collaborations", h),
        (f"{API}/me/collaborations", outsider.headers),
        (f"{API}/context?owner-id={admin.org_id}", h),
        (f"{API}/context?owner-id={admin.org_id}&page-token={next_token}", h),
        (f"{API}/context?owner-id={admin.org_id}&page-token=bogus", h),
        (f"{API}/context?owner-id={admin.org_id}&page-token={next_token}x", h),
        (f"{API}/context?owner-id=not-a-uuid", h),
        (f"{API}/context?owner-id={admin.org_id}&owner-type=team", h),
        (f"{API}/context?owner-id={uuid.uuid4()}", h),
        (f"{API}/context?owner-id={admin.org_id}", outsider.headers),
        (f"{API}/context?owner-slug={admin.org_slug}", viewer.headers),
        (f"{API}/context?owner-slug=gh/%00", h),
        (f"{API}/context", h),
        (f"{API}/context?owner-id={admin.org_id}", {"Circle-Token": "circlet_pat_nope"}),
        (project, h),
        (project, outsider.headers),
        (f"{API}/project/{admin.org_slug}/missing", h),
        (f"{API}/project/gh%2F{admin.org_slug.split('/')[1]}%2Fapp", h),
        (f"{project}/envvar", h),
        (f"{project}/envvar", viewer.headers),
        (f"{project}/envvar", outsider.headers),
        (f"{project}/envvar", {}),
        (f"{API}/project/xx/acme/app/envvar", h),
    ]
    for url, headers in hot_gets:
        await answer_both(apps, "GET", url, expect_hot=True, headers=headers)
    await answer_both(apps, "HEAD", f"{API}/me", expect_hot=False, headers=h)  # FastAPI routes take no HEAD: 405

    put_url = f"{API}/context/{context}/environment-variable/NAME"
    json_headers = h | {"Content-Type": "application/json"}
    hot_puts: list[tuple[str, bytes, dict[str, str]]] = [
        (put_url, b'{"value": "v"}', json_headers),
        (put_url, b'{"value": "w"}', json_headers),
        (put_url.replace(context, str(uuid.uuid4())), b'{"value": "v"}', json_headers),
        (put_url, b'{"value": "v"}', {"Circle-Token": "circlet_pat_nope", "Content-Type": "application/json"}),
        (put_url, b'{"value": "v"}', outsider.headers | {"Content-Type": "application/json"}),
        (put_url, b'{"value": "v"}', viewer.headers | {"Content-Type": "application/json"}),
        (put_url.replace("NAME", "1BAD"), b'{"value": "v"}', json_headers),
        (put_url, b'{"value": "' + b"x" * (BODY_LIMIT + 10) + b'"}', json_headers),  # declared too large: 413
        (put_url + "%00", b'{"value": "v"}', json_headers),
        # FastAPI's handler answers these (the hot path hands them, and the body read, to the stack)
        (put_url, b"not json", json_headers),
        (put_url, b"{}", json_headers),
        (put_url, b'{"value": 1}', json_headers),
        (put_url, b'{"value": "v"}', h | {"Content-Type": "text/plain"}),
        (put_url.replace(context, "not-a-uuid"), b'{"value": "v"}', json_headers),
    ]
    for url, body, headers in hot_puts:
        # the hot path answers wholly, or hands the request to the stack: either way the same answer
        hot_client, plain_client = apps.clients()
        async with hot_client, plain_client:
            hot = await hot_client.put(url, content=body, headers=headers)
            plain = await plain_client.put(url, content=body, headers=headers)
        if hot.status_code == 200:
            first, second = (orjson.loads(answer.content) for answer in (hot, plain))
            assert first.keys() == second.keys() and first["variable"] == second["variable"]
            assert hot.headers["content-type"] == plain.headers["content-type"]
        else:
            assert comparable(hot) == comparable(plain), (url, body[:40], hot.content, plain.content)

    # not hot: other methods, other routes, streamed bodies
    await answer_both(apps, "POST", f"{API}/me", expect_hot=False, headers=h)
    await answer_both(apps, "DELETE", f"{API}/context?owner-id={admin.org_id}", expect_hot=False, headers=h)
    await answer_both(apps, "GET", f"{API}/context/{context}", expect_hot=False, headers=h)
    await answer_both(apps, "GET", f"{API}/nowhere", expect_hot=False, headers=h)
    await answer_both(apps, "GET", f"{API}/me/", expect_hot=False, headers=h)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 1024

    hot_client, plain_client = apps.clients()
    async with hot_client, plain_client:
        before = apps.stack_calls
        streamed = [
            await client.put(put_url, content=chunks(), headers=json_headers) for client in (hot_client, plain_client)
        ]
        assert apps.stack_calls == before + 1
    assert comparable(streamed[0]) == comparable(streamed[1]) and streamed[0].status_code == 413


async def test_hot_routes_log_and_rate_limit_as_the_stack_does(
    settings: Settings, admin: Account, caplog: pytest.LogCaptureFixture
) -> None:
    tight = settings.model_copy(update={"rate_limit_per_minute": 2})
    hot, plain = create_app(tight), create_app(tight)
    assert isinstance(plain, HotRoutesApp)
    logged: dict[str, list[tuple[Any, ...]]] = {}
    async with hot.router.lifespan_context(hot), plain.router.lifespan_context(plain):
        plain.hot_routes = ()
        for name, app in (("hot", hot), ("plain", plain)):
            caplog.clear()
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://circlet.test")
            async with client:
                with caplog.at_level(logging.INFO, logger="circlet.access"):
                    answers = [await client.get(f"{API}/me", headers=admin.headers) for _ in range(3)]
                    answers.append(await client.get(f"{API}/me%00", headers=admin.headers))
            assert [answer.status_code for answer in answers] == [200, 200, 429, 400]
            assert answers[2].headers["retry-after"] and answers[2].json() == {"message": "Rate limit exceeded."}
            records = [record for record in caplog.records if record.name == "circlet.access"]
            logged[name] = [
                (record.method, record.path, record.status, len(record.request_id))  # type: ignore[attr-defined]
                for record in records
            ]
            assert [record.request_id for record in records] == [  # type: ignore[attr-defined]
                answer.headers["x-request-id"] for answer in answers
            ]
    assert logged["hot"] == logged["plain"]
    assert logged["hot"][0] == ("GET", "/api/v2/me", 200, 32) and logged["hot"][3][1:3] == ("(unmatched)", 400)


async def test_an_unexpected_error_is_the_same_500(
    apps: Apps, admin: Account, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(ProjectService, "list_env_vars", broken)
    hot_client, plain_client = apps.clients()
    url = f"{API}/project/{admin.org_slug}/app/envvar"
    async with hot_client, plain_client:
        with caplog.at_level(logging.INFO):
            caplog.clear()
            hot = await hot_client.get(url, headers=admin.headers)
            hot_logs = [(r.name, r.getMessage(), getattr(r, "status", None)) for r in caplog.records]
            caplog.clear()
            plain = await plain_client.get(url, headers=admin.headers)
            plain_logs = [(r.name, r.getMessage(), getattr(r, "status", None)) for r in caplog.records]
    internal_error = (500, b'{"message":"Internal server error."}')
    assert (hot.status_code, hot.content) == (plain.status_code, plain.content) == internal_error
    assert "x-request-id" not in hot.headers and "x-request-id" not in plain.headers
    assert hot_logs == plain_logs and ("circlet.access", "request", 500) in hot_logs
