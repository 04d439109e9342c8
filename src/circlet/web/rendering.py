"""Pages: the Jinja2 environment (autoescaped: everything users and jobs wrote shows as text), the
security headers every page carries, and the route class that turns refusals into HTML pages."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader
from starlette.responses import HTMLResponse, RedirectResponse, Response

from circlet.http.errors import ApiError

# No inline script at all ('self' only) and no framing; styles from our stylesheet only. Avatars may
# come from a forge (https), or be our own identicons.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}

environment = Environment(
    loader=PackageLoader("circlet.web", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


environment.filters["duration"] = duration
environment.filters["when"] = when
environment.filters["urlpart"] = lambda value: quote(str(value), safe="")


@dataclass(frozen=True)
class Crumb:
    label: str
    href: str | None = None


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    browser = getattr(request.state, "browser_session", None)
    body = environment.get_template(template).render(
        request_path=request.url.path,
        request_target=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        principal=browser.principal if browser else None,
        csrf_token=browser.csrf_token if browser else "",
        **context,
    )
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page, and back here after it."""


def local_path(target: str | None) -> str:
    """A path on this site to return to after signing in; anything else (another origin) is ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class PageRoute(APIRoute):
    """A web page's route: a refusal from a service (404 for another organization, 403, 429...) is a
    page with that status, and no session is a redirect to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    f"/signin?next={quote(back, safe='')}", status_code=303, headers=SECURITY_HEADERS
                )
            except RequestValidationError:  # a URL whose parts do not parse names no page
                return page(
                    request,
                    "error.html",
                    {"title": "404", "message": "Not found.", "status": 404, "crumbs": []},
                    status=404,
                )
            except ApiError as exc:
                return page(
                    request,
                    "error.html",
                    {"title": f"{exc.status}", "message": exc.message, "status": exc.status, "crumbs": []},
                    status=exc.status,
                    headers=exc.headers,
                )

        return answer
