"""Routers of the public API. Each carries the ``/api/v2`` prefix itself, so that a route's path is
the full template (what the access log and the served spec show)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import Response

API_PREFIX = "/api/v2"


def public_base_url(request: Request) -> str:
    """The URL clients reach the server at, for absolute URLs in responses: the configured public URL,
    else the one the request came to."""
    configured: str = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def api_router(tag: str) -> APIRouter:
    return APIRouter(prefix=API_PREFIX, tags=[tag])


class LeanRoute(APIRoute):
    """An ``APIRoute`` for the hottest operations, answered without FastAPI's per-request machinery.

    FastAPI solves an endpoint's dependencies and validates its parameters on every request, through
    general code (dependency graph, telemetry hooks, endpoint context for error messages): about a
    fifth of a context-list request. A lean route takes the ``Request``, path parameters, at most one
    JSON body (a pydantic model, not embedded) and plain dependencies taking the request
    (authentication), checks that at registration, and calls the endpoint with them directly; query
    parameters are the endpoint's business (``circlet.http.params``). Everything else is the same
    route: same path, same ``operationId`` and schema in ``app.openapi()`` (so the served spec is
    unchanged), same matching, same exception handlers (errors raised by the dependency or the
    endpoint reach them as before), dependencies run before the endpoint, in declaration order, as
    FastAPI runs them.

    Only requests that FastAPI would accept take the lean way: ``str`` path parameters need nothing;
    other path parameters and the body are validated first, with FastAPI's own fields (so the values
    are the ones FastAPI would pass), the body read once and parsed with orjson, and only when it is
    declared ``application/json``. Anything else (a body that is not JSON or not valid, a path
    parameter that does not validate, another content type, no body) goes to FastAPI's own handler,
    before any dependency has run, so its answer, error message and order of checks (JSON errors
    before authentication, validation errors after) are FastAPI's. The body read here is cached on
    the request, and FastAPI's handler reads it from there.

    ``answer`` is the lean way alone (``None`` where FastAPI's handler must answer): what
    ``circlet.http.hot_path`` calls when it answers a request ahead of the middleware stack."""

    answer: Callable[[Request], Awaitable[Response | None]]
    takes_body: bool

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        endpoint = dependant.call
        body_params = dependant.body_params
        unsupported = dependant.query_params or dependant.header_params or dependant.cookie_params
        if unsupported or len(body_params) > 1 or (body_params and self.body_field is not body_params[0]):
            raise TypeError(f"{self.path}: a lean route takes the request, path parameters, one body and dependencies")
        if body_params and not (
            isinstance(body_params[0].field_info.annotation, type)
            and issubclass(body_params[0].field_info.annotation, BaseModel)
        ):
            raise TypeError(f"{self.path}: a lean route's body is a pydantic model")
        dependencies: list[tuple[str, Callable[[Request], Awaitable[Any]]]] = []
        for dependency in dependant.dependencies:
            if dependency.dependencies or dependency.name is None or dependency.call is None:
                raise TypeError(f"{self.path}: a lean route's dependencies take only the request")
            dependencies.append((dependency.name, dependency.call))
        request_name = dependant.request_param_name
        plain_paths = [field.name for field in dependant.path_params if field.field_info.annotation is str]
        typed_paths = [field for field in dependant.path_params if field.field_info.annotation is not str]
        body_field = body_params[0] if body_params else None
        assert endpoint is not None
        fallback = super().get_route_handler() if (typed_paths or body_field is not None) else None

        async def answer(request: Request) -> Response | None:
            """The endpoint's response, or ``None`` when the request is FastAPI's to answer."""
            arguments: dict[str, Any] = {}
            path_params = request.path_params
            if fallback is not None:
                for field in typed_paths:
                    value, errors = field.validate(path_params[field.name], loc=("path", field.alias))
                    if errors:
                        return None
                    arguments[field.name] = value
                if body_field is not None:
                    body = await _json_body(request)
                    if body is None:
                        return None
                    value, errors = body_field.validate(body, loc=("body",))
                    if errors:
                        return None
                    arguments[body_field.name] = value
            for name, call in dependencies:
                arguments[name] = await call(request)
            if request_name is not None:
                arguments[request_name] = request
            for name in plain_paths:
                arguments[name] = path_params[name]
            response: Response = await endpoint(**arguments)
            return response

        async def handle(request: Request) -> Response:
            response = await answer(request)
            if response is None:
                assert fallback is not None
                return await fallback(request)
            return response

        self.answer = answer
        self.takes_body = body_field is not None
        return handle


async def _json_body(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, if it is declared ``application/json`` and orjson reads an object in
    it; ``None`` for anything else (which FastAPI's handler then answers as it always has)."""
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        body = await request.body()
        parsed = orjson.loads(body) if body else None
    except Exception:  # a malformed body or a client gone: FastAPI's handler decides what it is
        return None
    return parsed if type(parsed) is dict else None


# The lean routes, whatever their tag, are matched before every other route. Starlette tries routes in
# order and FastAPI's matching costs a few microseconds a route: a project's variables, behind the
# Context, User, Organization and Group routers and most of the Project routes, cost a quarter of the
# request to find. Matching them first changes no answer: no other route matches a lean route's
# paths with the same method (tests/http/test_lean_routes.py checks it), and a request with another
# method goes on to the route that has it, as before. The app adds them to its own router
# (``add_hot_routes``).
hot_router = APIRouter(prefix=API_PREFIX)


def lean_get(router: APIRouter, path: str, *, operation_id: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@router.get(path, operation_id=…)`` served by a ``LeanRoute``, with ``router``'s prefix and tags,
    registered on ``hot_router`` (whose routes the app matches first)."""
    return lean_route(router, "GET", path, operation_id=operation_id)


def lean_put(router: APIRouter, path: str, *, operation_id: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@router.put(path, operation_id=…)`` served by a ``LeanRoute`` (see ``lean_get``)."""
    return lean_route(router, "PUT", path, operation_id=operation_id)


def lean_route(
    router: APIRouter, method: str, path: str, *, operation_id: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if router.prefix != API_PREFIX:
        raise ValueError("lean routes are API routes")

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        hot_router.add_api_route(
            path,
            endpoint,
            methods=[method],
            operation_id=operation_id,
            tags=list(router.tags),
            route_class_override=LeanRoute,
        )
        return endpoint

    return register


def add_hot_routes(app: FastAPI) -> None:
    """The lean routes, added to the app's own router, ahead of every router it includes.

    Not ``app.include_router(hot_router)``: FastAPI matches an included router's routes twice per
    request (once to find that the router matches, once more to pick the route inside it), and that
    second pass, for the 4th or 5th hot route, was a third of ``/me``."""
    for route in hot_router.routes:
        assert isinstance(route, LeanRoute)
        app.router.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            operation_id=route.operation_id,
            tags=list(route.tags),
            route_class_override=LeanRoute,
        )
