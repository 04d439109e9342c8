"""One error hierarchy, one place that maps errors to HTTP: every non-2xx is ``{"message": ...}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("circlet.http")


class ApiError(Exception):
    status = 500
    default_message = "Internal server error."

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers
        super().__init__(self.message)


class BadRequest(ApiError):
    status = 400
    default_message = "Bad request."


class Unauthorized(ApiError):
    status = 401
    default_message = "You must log in first."


class Forbidden(ApiError):
    status = 403
    default_message = "Permission denied."


class NotFound(ApiError):
    status = 404
    default_message = "Not found."


class Conflict(ApiError):
    status = 409
    default_message = "Conflict."


class PayloadTooLarge(ApiError):
    status = 413
    default_message = "Request body too large."


class RateLimited(ApiError):
    status = 429
    default_message = "Rate limit exceeded."


def message_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"message": message}), status_code=status, media_type="application/json", headers=headers
    )


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Name the field and the problem, as a person would: ``owner.id: Input should be a valid UUID``."""
    parts = []
    for error in errors[:5]:
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(location)
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append("Request body is not valid JSON.")
        elif kind == "missing" and not field:
            parts.append("A JSON request body is required.")
        elif kind == "missing":
            parts.append(f"{field}: required field is missing.")
        elif kind == "extra_forbidden":
            parts.append(f"{field}: unexpected field.")
        elif field:
            parts.append(f"{field}: {error.get('msg', 'invalid value')}.")
        else:
            parts.append(f"{error.get('msg', 'invalid request')}.")
    return " ".join(dict.fromkeys(parts))


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return message_response(exc.status, exc.message, exc.headers)

    async def on_validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return message_response(400, describe_validation_errors(exc.errors()))

    async def on_http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return message_response(404, "Not found.")
        if exc.status_code == 405:
            return message_response(405, "Method not allowed.", exc.headers)
        return message_response(exc.status_code, str(exc.detail), exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"path": request.scope.get("path"), "request_id": request.scope.get("state", {}).get("rid")},
        )
        return message_response(500, "Internal server error.")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
