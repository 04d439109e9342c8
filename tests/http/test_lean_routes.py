"""The lean routes (circlet.http.routing): matched first, without changing which route answers what."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from circlet.app import ROUTERS, create_app
from circlet.http.routing import LeanRoute, hot_router
from circlet.openapi.spec import implemented_operations

SAMPLES = ("gh", "acme", "envvar", "settings", "pipeline", "me", "collaborations", "x%2Fy", "0" * 8)


def concrete_paths(template: str) -> list[str]:
    """The template with each parameter replaced by each sample value."""
    return [re.sub(r"\{[^}]+\}", sample, template) for sample in SAMPLES]


def test_no_other_route_matches_a_lean_route_path() -> None:
    """Being matched first changes nothing only if no other GET route would match the same paths."""
    others = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    for lean in hot_router.routes:
        assert isinstance(lean, LeanRoute)
        for path in concrete_paths(lean.path):
            for other in others:
                if "GET" in (other.methods or ()) and other.path_regex.match(path):
                    raise AssertionError(f"{other.path} also matches {path} (lean route {lean.path})")


def test_lean_routes_keep_their_operations_in_the_spec() -> None:
    app = create_app()
    schema = app.openapi()
    for lean in hot_router.routes:
        assert isinstance(lean, LeanRoute)
        operation = schema["paths"][lean.path]["get"]
        assert operation["operationId"] == lean.operation_id
        assert operation["tags"]
    served = {operation for _method, operation in implemented_operations(app)}
    assert "/context" in served and "/me/collaborations" in served
