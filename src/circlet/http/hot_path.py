"""The hot routes answered ahead of the middleware stack, with the same behaviour.

Every request to a FastAPI app goes through Starlette's and FastAPI's layers before it reaches a
route: the server-error and exception middleware, FastAPI's telemetry check, exception and body-limit
layers, an ``AsyncExitStack`` middleware, the router's loop, and, around the endpoint, a second
exception wrapper and two more exit stacks. For ``/me`` that was about 40 % of the server's CPU
time (docs/performance.md, round 4). ``HotRoutesApp.__call__`` matches the lean routes that
the router would try first (``circlet.http.routing.add_hot_routes``), and answers a request that one of
them takes fully itself, doing what those layers and ``circlet.http.middleware.RequestMiddleware`` do
for it:

- the request id (scope state and ``x-request-id`` on every response but an unexpected error's 500,
  which Starlette's server-error middleware sends from outside ours), the refusals before reading
  (declared body over the limit: 413; NUL in the URL: 400), one access-log line;
- ``scope["app"]``, ``scope["route"]``, ``scope["path_params"]``, ``scope["endpoint"]``, as the router
  sets them;
- errors: the app's exception handlers, looked up by the exception's classes as Starlette does; an
  unexpected exception goes to the ``Exception`` handler (the 500), the access line says 500, and
  it is raised again for the server to log, as Starlette's server-error middleware does.

Anything else goes to the app as before, untouched: another path or method, a root path, a
request that needs FastAPI's own handler (``LeanRoute.answer`` says so: a body that is not a JSON
object, a bad path parameter; the body already read is given to the app again), or a body with no
declared length (the middleware counts a streamed body). A hot route has no dependency with
``yield``, no background task and no file upload, which are what the skipped exit stacks are for.
With FastAPI's OpenTelemetry support configured (a tracer, meter or logger provider), nothing is
answered here, so that every request is traced as before.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from circlet.http.middleware import (
    content_length,
    log_request,
    new_request_id,
    refused_before_reading,
    send_refusal,
)
from circlet.http.routing import LeanRoute


class HotRoutesApp(FastAPI):
    """A FastAPI app that answers its hot routes itself (see the module's docstring).

    ``enable_hot_routes`` turns it on, once the app is complete (its lifespan does); until then,
    and with ``hot_routes`` empty, it is a plain FastAPI app."""

    hot_routes: tuple[LeanRoute, ...] = ()
    _max_body_bytes: int = 0
    _handlers: dict[Any, Any]
    _server_error_handler: Any = None

    def enable_hot_routes(self, max_body_bytes: int) -> None:
        telemetry = getattr(self, "_native_telemetry", None)
        if self.root_path or (telemetry is not None and telemetry.enabled()):
            self.hot_routes = ()
            return
        leading: list[LeanRoute] = []
        for route in self.router.routes:  # only those the router tries before any other route
            if not isinstance(route, LeanRoute) or "answer" not in vars(route):
                break
            leading.append(route)
        handlers = dict(self.exception_handlers)
        self._server_error_handler = handlers.pop(Exception, None) or handlers.pop(500, None)
        if self._server_error_handler is None or any(isinstance(key, int) for key in handlers):
            self.hot_routes = ()  # not the app create_app builds: leave everything to Starlette
            return
        self._handlers = handlers
        self._max_body_bytes = max_body_bytes
        self.hot_routes = tuple(leading)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_routes and scope["type"] == "http" and not scope.get("root_path"):
            method = scope["method"]
            path = scope["path"]
            for route in self.hot_routes:
                match = route.path_regex.match(path)
                if match is None:
                    continue
                if route.methods is not None and method not in route.methods:
                    break  # another route has this method, or none does (405): the router decides
                if route.takes_body and (content_length(scope) is None or _has_header(scope, b"transfer-encoding")):
                    break  # a streamed body: the request middleware counts it against the limit
                params = match.groupdict()
                for key, value in params.items():
                    params[key] = route.param_convertors[key].convert(value)
                await self._answer(route, params, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _answer(
        self, route: LeanRoute, path_params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        request_id = new_request_id()
        rid_header = (b"x-request-id", request_id.encode())
        refusal = refused_before_reading(scope, self._max_body_bytes)
        if refusal is not None:
            scope.setdefault("state", {})["rid"] = request_id
            await send_refusal(send, refusal, scope, started, request_id)
            return

        received: list[Message] = []
        request_receive = receive
        if route.takes_body:

            async def recording_receive() -> Message:
                message = await receive()
                received.append(message)
                return message

            request_receive = recording_receive

        # what the request middleware and the router put in the scope; set only once the request is ours
        scope.setdefault("state", {})["rid"] = request_id
        scope["app"] = self
        scope["route"] = route
        scope["path_params"] = path_params
        scope["endpoint"] = route.endpoint
        request = Request(scope, request_receive, send)
        try:
            response = await route.answer(request)
        except Exception as exc:
            handler = _handler_for(self._handlers, exc)
            if handler is None:
                await self._server_error(request, exc, scope, receive, send, started, request_id)
                raise
            response = await handler(request, exc)
            exc.__traceback__ = None  # as Starlette does: reused exceptions would pile up tracebacks
        if response is None:  # FastAPI's handler answers this one: the app, from the start, as before
            for key in ("route", "path_params", "endpoint"):
                del scope[key]
            await super().__call__(scope, _replaying(received, receive), send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await response(scope, receive, send_with_id)
        finally:
            log_request(scope, response.status_code, started, request_id)

    async def _server_error(
        self,
        request: Request,
        exc: Exception,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: float,
        request_id: str,
    ) -> None:
        """What an unexpected exception gets from the stack: the request middleware's access line
        (status 500), then Starlette's server-error middleware's 500 from the ``Exception`` handler,
        sent without the request id (that middleware is outside ours)."""
        log_request(scope, 500, started, request_id)
        response = await self._server_error_handler(request, exc)
        await response(scope, receive, send)


def _handler_for(handlers: dict[Any, Any], exc: Exception) -> Any:
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return handler
    return None


def _has_header(scope: Scope, name: bytes) -> bool:
    return any(key == name for key, _ in scope.get("headers", ()))


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives again what was already received."""
    pending = deque(received)

    async def replay() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return replay
