"""The lean routes (circlet.http.routing): matched first, without changing which route answers what."""

from __future__ import annotations

import re
import uuid

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

from circlet.app import ROUTERS, create_app
from circlet.http.routing import LeanRoute, hot_router
from circlet.openapi.spec import implemented_operations
from circlet.settings import Settings
from tests.conftest import Account

SAMPLES = ("gh", "acme", "envvar", "settings", "pipeline", "me", "collaborations", "x%2Fy", "0" * 8)


def concrete_paths(template: str) -> list[str]:
    """The template with each parameter replaced by each sample value."""
    return [re.sub(r"\{[^}]+\}", sample, template) for sample in SAMPLES]


def test_no_other_route_matches_a_lean_route_path() -> None:
    """Being matched first changes nothing only if no other route of the same method would match the
    same paths."""
    others = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    for lean in hot_router.routes:
        assert isinstance(lean, LeanRoute)
        for path in concrete_paths(lean.path):
            for other in others:
                if set(lean.methods) & set(other.methods or ()) and other.path_regex.match(path):
                    raise AssertionError(f"{other.path} also matches {path} (lean route {lean.path})")


def test_lean_routes_keep_their_operations_in_the_spec() -> None:
    app = create_app()
    schema = app.openapi()
    for lean in hot_router.routes:
        assert isinstance(lean, LeanRoute)
        (method,) = lean.methods
        operation = schema["paths"][lean.path][method.lower()]
        assert operation["operationId"] == lean.operation_id
        assert operation["tags"]
    served = {operation for _method, operation in implemented_operations(app)}
    assert "/context" in served and "/me/collaborations" in served


async def test_lean_put_answers_as_fastapi_does(
    settings: Settings, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The context variable PUT, lean and as a plain FastAPI route, on the same database: same status and
    same bytes for good and malformed bodies, bad path parameters, bad tokens and other content types."""
    lean_app = create_app(settings)
    with monkeypatch.context() as patch:
        patch.setattr(LeanRoute, "get_route_handler", APIRoute.get_route_handler)
        plain_app = create_app(settings)
    async with lean_app.router.lifespan_context(lean_app), plain_app.router.lifespan_context(plain_app):
        lean = httpx.AsyncClient(transport=httpx.ASGITransport(app=lean_app), base_url="http://circlet.test")
        plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=plain_app), base_url="http://circlet.test")
        async with lean, plain:
            created = await lean.post(
                "/api/v2/context", json={"name": "lean", "owner": {"id": admin.org_id}}, headers=admin.headers
            )
            context = created.json()["id"]
            good = admin.headers | {"Content-Type": "application/json"}
            url = f"/api/v2/context/{context}/environment-variable/NAME"
            cases: list[tuple[str, bytes, dict[str, str]]] = [
                (url, b'{"value": "v"}', good),
                (url, b'{"value": "w"}', good),
                (url, b"not json", good),
                (url, b'{"value": "v"', good),
                (url, b"", good),
                (url, b"[]", good),
                (url, b'"value"', good),
                (url, b"null", good),
                (url, b"{}", good),
                (url, b'{"value": 1}', good),
                (url, b'{"value": null}', good),
                (url, b'{"value": "v", "other": 1}', good),
                (url, b'{"value": "a\\u0000b"}', good),
                (url, b'{"value": "\\ud800"}', good),
                (url, b'{"value": NaN}', good),
                (url, b"\xef\xbb\xbf" + b'{"value": "v"}', good),
                (url, b'{"value": "\xff"}', good),
                (url, b'{"value": "' + b"x" * 70_000 + b'"}', good),
                (url, b'{"value": "' + b"x" * 2_000_000 + b'"}', good),
                (url, b'{"value": "v"}', admin.headers | {"Content-Type": "text/plain"}),
                (url, b'{"value": "v"}', admin.headers | {"Content-Type": "application/json; charset=utf-8"}),
                (url, b'{"value": "v"}', admin.headers),
                (url, b"not json", {"Content-Type": "application/json"}),
                (url, b'{"value": "v"}', {"Content-Type": "application/json"}),
                (url, b"{}", {"Circle-Token": "nope", "Content-Type": "application/json"}),
                (url.replace(context, "not-a-uuid"), b'{"value": "v"}', good),
                (url.replace(context, "not-a-uuid"), b"{}", good),
                (url.replace(context, "not-a-uuid"), b"nope", good),
                (url.replace(context, str(uuid.uuid4())), b'{"value": "v"}', good),
                (url.replace("NAME", "1BAD"), b'{"value": "v"}', good),
            ]
            for path, body, headers in cases:
                answers = [await client.put(path, content=body, headers=headers) for client in (lean, plain)]
                statuses = [answer.status_code for answer in answers]
                bodies = [answer.content for answer in answers]
                assert statuses[0] == statuses[1], (body[:40], headers, statuses, bodies)
                if statuses[0] == 200:
                    first, second = (orjson.loads(b) for b in bodies)
                    assert first.keys() == second.keys() and first["variable"] == second["variable"]
                else:
                    assert bodies[0] == bodies[1], (body[:40], headers, bodies)
