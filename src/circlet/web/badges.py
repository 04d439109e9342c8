"""Status badges for READMEs: ``/badge/{vcs}/{org}/{project}.svg?branch=main`` (``&style=shield``),
the latest pipeline's status on the branch as an SVG. Public only for open-source projects; else the
viewer must be signed in (the session cookie) or pass ``circle-token``, as CircleCI's private badges."""

from __future__ import annotations

from fastapi import APIRouter, Request
from markupsafe import escape
from starlette.responses import Response

from circlet.auth import Principal
from circlet.db.engine import Database
from circlet.http.errors import ApiError, NotFound
from circlet.pipelines.service import PipelineService
from circlet.web.sessions import current_session

router = APIRouter(include_in_schema=False)

# Background per status; white text on each passes WCAG AA (>= 4.5:1).
COLOURS = {
    "passed": "#1a7f37",
    "failed": "#cf222e",
    "running": "#0969da",
    "on_hold": "#8250df",
    "canceled": "#59636e",
    "none": "#59636e",
}
WORDS = {"passed": "passed", "failed": "failed", "running": "running", "on_hold": "on hold", "canceled": "canceled"}
WORDS["none"] = "no builds"
CHARACTER_WIDTH = 7  # at 11 px Verdana, near enough for a badge
BADGE_HEADERS = {
    "cache-control": "no-cache, max-age=0",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "x-content-type-options": "nosniff",
}


def badge_svg(status: str, *, shield: bool) -> str:
    label = "circleci" if shield else "CIRCLECI"
    word = WORDS[status] if shield else WORDS[status].upper()
    left = len(label) * CHARACTER_WIDTH + 12
    right = len(word) * CHARACTER_WIDTH + 12
    width = left + right
    radius = 3 if shield else 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label}: {escape(word)}"><title>{label}: {escape(word)}</title>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="{radius}" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#343434"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{COLOURS[status]}"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{label}</text><text x="{left + right / 2}" y="14">{escape(word)}</text></g></svg>'
    )


async def badge_viewer(request: Request) -> Principal | None:
    """A signed-in browser, or a ``circle-token`` in the URL; nobody otherwise (no error: public badges)."""
    browser = await current_session(request)
    if browser is not None:
        return browser.principal
    if request.query_params.get("circle-token"):
        try:
            principal: Principal = await request.app.state.authenticator.authenticate(request)
            return principal
        except ApiError:
            return None
    return None


@router.get("/badge/{vcs}/{org}/{project_file}")
async def status_badge(request: Request, vcs: str, org: str, project_file: str) -> Response:
    if not project_file.endswith(".svg"):
        raise NotFound("Project not found.")
    database: Database = request.app.state.database
    pipelines: PipelineService = request.app.state.pipeline_service
    viewer = await badge_viewer(request)
    branch = request.query_params.get("branch") or None
    async with database.reading() as session:
        status = await pipelines.badge_status(session, viewer, (vcs, org, project_file[: -len(".svg")]), branch)
    shield = request.query_params.get("style") == "shield"
    return Response(badge_svg(status, shield=shield), media_type="image/svg+xml", headers=BADGE_HEADERS)
