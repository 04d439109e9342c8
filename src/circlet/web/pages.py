"""The pages. Each opens one unit of work and calls the services the API calls, with the session's
``Principal``: the permission checks and the data are the API's."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from circlet.auth import Principal
from circlet.db.engine import Database
from circlet.jobs.service import JobService
from circlet.web.rendering import Crumb, PageRoute, page
from circlet.web.sessions import require_session

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Session = Annotated[Principal, Depends(require_session)]


def project_crumbs(vcs: str, org: str, project: str) -> list[Crumb]:
    return [
        Crumb("Dashboard", "/"),
        Crumb(org, f"/?org={vcs}/{org}"),
        Crumb(project, f"/pipelines/{vcs}/{org}/{project}"),
    ]


@router.get("/")
async def dashboard(request: Request, principal: Session) -> Response:
    return page(request, "dashboard.html", {"title": "Dashboard", "crumbs": [Crumb("Dashboard")]})


@router.get("/pipelines/{vcs}/{org}/{project}/{number}/workflows/{workflow_id}/jobs/{job_number}")
async def job_page(
    request: Request,
    principal: Session,
    vcs: str,
    org: str,
    project: str,
    number: int,
    workflow_id: str,
    job_number: int,
) -> Response:
    """A placeholder until the job page (steps, live log, tests, artifacts) lands: the job's name and
    status, through the API's own call."""
    database: Database = request.app.state.database
    jobs: JobService = request.app.state.job_service
    async with database.reading() as session:
        job = await jobs.details(session, principal, (vcs, org, project), job_number)
    crumbs = [
        *project_crumbs(vcs, org, project),
        Crumb(f"Pipeline {number}", f"/pipelines/{vcs}/{org}/{project}/{number}"),
        Crumb(f"Job {job_number}"),
    ]
    return page(request, "job.html", {"title": f"{job['name']} #{job_number}", "crumbs": crumbs, "job": job})
