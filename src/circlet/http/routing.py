"""Routers of the public API. Each carries the ``/api/v2`` prefix itself, so that a route's path is
the full template (what the access log and the served spec show)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

API_PREFIX = "/api/v2"


def api_router(tag: str) -> APIRouter:
    return APIRouter(prefix=API_PREFIX, tags=[tag])


class LeanRoute(APIRoute):
    """An ``APIRoute`` for the hottest reads, answered without FastAPI's per-request machinery.

    FastAPI solves an endpoint's dependencies and validates its parameters on every request, through
    general code (dependency graph, telemetry hooks, endpoint context for error messages): about a
    fifth of a context-list request. A lean route accepts only what needs no validation, namely the
    ``Request``, ``str`` path parameters and plain dependencies taking the request (authentication),
    checks that at registration, and calls the endpoint with them directly; query parameters are the
    endpoint's business (``circlet.http.params``). Everything else is the same route: same path, same
    ``operationId`` and schema in ``app.openapi()`` (so the served spec is unchanged), same matching,
    same exception handlers (errors raised by the dependency or the endpoint reach them as before),
    dependencies run before the endpoint, in declaration order, as FastAPI runs them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        endpoint = dependant.call
        unsupported = (
            dependant.query_params or dependant.header_params or dependant.cookie_params or dependant.body_params
        )
        if unsupported or any(field.field_info.annotation is not str for field in dependant.path_params):
            raise TypeError(f"{self.path}: a lean route takes the request, str path parameters and dependencies")
        dependencies: list[tuple[str, Callable[[Request], Awaitable[Any]]]] = []
        for dependency in dependant.dependencies:
            if dependency.dependencies or dependency.name is None or dependency.call is None:
                raise TypeError(f"{self.path}: a lean route's dependencies take only the request")
            dependencies.append((dependency.name, dependency.call))
        request_name = dependant.request_param_name
        path_names = [field.name for field in dependant.path_params]
        assert endpoint is not None

        async def handle(request: Request) -> Response:
            arguments: dict[str, Any] = {}
            for name, call in dependencies:
                arguments[name] = await call(request)
            if request_name is not None:
                arguments[request_name] = request
            if path_names:
                path_params = request.path_params
                for name in path_names:
                    arguments[name] = path_params[name]
            response: Response = await endpoint(**arguments)
            return response

        return handle


# The lean routes, whatever their tag, are matched before every other route. Starlette tries routes in
# order and FastAPI's matching costs a few microseconds a route: a project's variables, behind the
# Context, User, Organization and Group routers and most of the Project routes, cost a quarter of the
# request to find. Matching them first changes no answer: no other GET route matches a lean route's
# paths (tests/http/test_lean_routes.py checks it), and a request with another method goes on to the
# route that has it, as before.
hot_router = APIRouter(prefix=API_PREFIX)


def lean_get(router: APIRouter, path: str, *, operation_id: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@router.get(path, operation_id=…)`` served by a ``LeanRoute``, with ``router``'s prefix and tags,
    registered on ``hot_router`` (which the app includes first)."""
    if router.prefix != API_PREFIX:
        raise ValueError("lean routes are API routes")

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        hot_router.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            operation_id=operation_id,
            tags=list(router.tags),
            route_class_override=LeanRoute,
        )
        return endpoint

    return register
