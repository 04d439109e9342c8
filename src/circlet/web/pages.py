"""The pages. Each opens one unit of work and calls the services the API calls, with the session's
``Principal``: the permission checks and the data are the API's."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from circlet.auth import RANK, ROLE_MEMBER, Principal
from circlet.db.engine import Database
from circlet.http.errors import BadRequest, NotFound
from circlet.http.routing import public_base_url
from circlet.jobs.service import JobService
from circlet.pipelines.schemas import TriggerPipeline
from circlet.pipelines.service import PipelineService
from circlet.projects.service import ProjectService
from circlet.users import service as accounts
from circlet.web.graph import render_svg
from circlet.web.rendering import SECURITY_HEADERS, Crumb, PageRoute, page
from circlet.web.service import BrowserSession
from circlet.web.sessions import require_form_session, require_session
from circlet.workflows.service import WorkflowService

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Session = Annotated[Principal, Depends(require_session)]
FormSession = Annotated[BrowserSession, Depends(require_form_session)]

FAILED = {"failed", "error", "failing", "infrastructure_fail", "timedout", "unauthorized", "errored"}
ACTIVE = {"running", "queued", "not_run"}


def may(principal: Principal, org_id: uuid.UUID, least: str) -> bool:
    """Whether to show a button: the service checks the role again when the form is sent."""
    role = principal.role_in(org_id)
    return role is not None and RANK[role] >= RANK[least]


def pipeline_status(item: dict[str, Any]) -> str:
    """One word for a pipeline row, from its workflows as CircleCI's list shows it."""
    if item["state"] == "errored":
        return "errored"
    statuses = [w["status"] for w in item.get("workflows", [])]
    if not statuses:
        return "created" if item["state"] == "created" else item["state"]
    for word in ("failing", "running", "on_hold"):
        if word in statuses:
            return word
    if any(s in FAILED for s in statuses):
        return "failed"
    if "canceled" in statuses:
        return "canceled"
    if all(s == "success" for s in statuses):
        return "success"
    return str(statuses[0])


def pipeline_times(item: dict[str, Any]) -> tuple[datetime | None, float | None]:
    workflows = item.get("workflows", [])
    if not workflows:
        return None, None
    started = min(w["created_at"] for w in workflows)
    stops = [w["stopped_at"] for w in workflows]
    if any(stop is None for stop in stops):
        return started, None
    return started, (max(stops) - started).total_seconds()


def pipeline_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        vcs, org, project = item["project_slug"].split("/", 2)
        started, duration = pipeline_times(item)
        revision = item["vcs"].get("revision") or ""
        rows.append(
            {
                "item": item,
                "status": pipeline_status(item),
                "href": f"/pipelines/{item['project_slug']}/{item['number']}",
                "project_href": f"/pipelines/{item['project_slug']}",
                "project": project,
                "org": org,
                "vcs": vcs,
                "ref": item["vcs"].get("branch") or item["vcs"].get("tag") or "",
                "is_tag": "tag" in item["vcs"],
                "subject": (item["vcs"].get("commit") or {}).get("subject") or "",
                "sha": revision[:7],
                "started": started,
                "duration": duration,
            }
        )
    return rows


def project_crumbs(vcs: str, org: str, project: str) -> list[Crumb]:
    return [
        Crumb("Dashboard", "/"),
        Crumb(org, f"/?{urlencode({'org': f'{vcs}/{org}'})}"),
        Crumb(project, f"/pipelines/{vcs}/{org}/{project}"),
    ]


def next_page_href(request: Request, token: str | None) -> str | None:
    if not token:
        return None
    query = {k: v for k, v in request.query_params.items() if k != "page-token"}
    query["page-token"] = token
    return f"{request.url.path}?{urlencode(query)}"


def text_filter(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.get("/")
async def dashboard(
    request: Request,
    principal: Session,
    org: str | None = None,
    project: str | None = None,
    branch: str | None = None,
    mine: bool = False,
) -> Response:
    """Every pipeline the user can see, newest first; filters by organization, project, branch, mine."""
    database: Database = request.app.state.database
    pipelines: PipelineService = request.app.state.pipeline_service
    token = request.query_params.get("page-token") or None
    org, project, branch = text_filter(org), text_filter(project), text_filter(branch)
    async with database.reading() as session:
        organizations = await accounts.collaborations(session, principal.user_id)
        if org and project:
            vcs, _, org_name = org.partition("/")
            body = await pipelines.list_for_project(
                session,
                principal,
                (vcs, org_name, project),
                branch=branch,
                mine=mine,
                page_token=token,
                base_url=public_base_url(request),
                with_workflows=True,
            )
        else:
            body = await pipelines.list_for_org(
                session,
                principal,
                org,
                mine,
                token,
                public_base_url(request),
                branch=branch,
                with_workflows=True,
            )
    return page(
        request,
        "dashboard.html",
        {
            "title": "Dashboard",
            "crumbs": [Crumb("Dashboard")],
            "organizations": organizations,
            "filters": {"org": org or "", "project": project or "", "branch": branch or "", "mine": mine},
            "rows": pipeline_rows(body["items"]),
            "next_href": next_page_href(request, body["next_page_token"]),
            "show_project": True,
        },
    )


@router.get("/pipelines/{vcs}/{org}/{project}")
async def project_pipelines(
    request: Request,
    principal: Session,
    vcs: str,
    org: str,
    project: str,
    branch: str | None = None,
    mine: bool = False,
) -> Response:
    database: Database = request.app.state.database
    pipelines: PipelineService = request.app.state.pipeline_service
    projects: ProjectService = request.app.state.project_service
    branch = text_filter(branch)
    async with database.reading() as session:
        found = await projects.find(session, principal, (vcs, org, project))
        body = await pipelines.list_for_project(
            session,
            principal,
            (vcs, org, project),
            branch=branch,
            mine=mine,
            page_token=request.query_params.get("page-token") or None,
            base_url=public_base_url(request),
            with_workflows=True,
        )
    return page(
        request,
        "project.html",
        {
            "title": f"{found.project.name} pipelines",
            "crumbs": project_crumbs(vcs, org, project),
            "project_name": found.project.name,
            "settings_href": f"/settings/project/{vcs}/{org}/{project}",
            "trigger_href": f"/pipelines/{vcs}/{org}/{project}/trigger",
            "default_branch": found.project.default_branch,
            "may_trigger": may(principal, found.org.id, ROLE_MEMBER),
            "filters": {"branch": branch or "", "mine": mine},
            "rows": pipeline_rows(body["items"]),
            "next_href": next_page_href(request, body["next_page_token"]),
            "show_project": False,
        },
    )


async def pipeline_page(
    request: Request, principal: Principal, slug: tuple[str, str, str], number: int, focus: str | None
) -> Response:
    database: Database = request.app.state.database
    pipelines: PipelineService = request.app.state.pipeline_service
    projects: ProjectService = request.app.state.project_service
    workflows: WorkflowService = request.app.state.workflow_service
    vcs, org, project = slug
    async with database.reading() as session:
        found = await projects.find(session, principal, slug)
        pipeline = await pipelines.get_by_number(session, principal, slug, number, public_base_url(request))
        pipeline_id = pipeline["id"]
        config = await pipelines.config(session, principal, pipeline_id)
        values = await pipelines.values(session, principal, pipeline_id)
        parameters = await pipelines.parameters(session, principal, pipeline_id)
        workflow_list = (await pipelines.workflows(session, principal, pipeline_id, None))["items"]
        workflow_jobs = await workflows.jobs_of_pipeline(session, principal, pipeline_id)
    if focus is not None and focus not in {str(w["id"]) for w in workflow_list}:
        raise NotFound("Workflow not found.")
    base = f"/pipelines/{vcs}/{org}/{project}/{number}"
    may_approve = may(principal, found.org.id, ROLE_MEMBER)

    def job_href(job: dict[str, Any], workflow_id: uuid.UUID) -> str | None:
        number = job.get("job_number")
        return f"{base}/workflows/{workflow_id}/jobs/{number}" if number is not None else None

    drawn = []
    for workflow in workflow_list:
        jobs = workflow_jobs.get(workflow["id"], [])
        drawn.append(
            {
                "workflow": workflow,
                "href": f"{base}/workflows/{workflow['id']}",
                "svg": render_svg(jobs, partial(job_href, workflow_id=workflow["id"])),
                "jobs": jobs,
                "approvals": [
                    job
                    for job in jobs
                    if job["type"] == "approval" and job["status"] == "on_hold" and job.get("approval_request_id")
                ],
                "focused": focus == str(workflow["id"]),
            }
        )
    return page(
        request,
        "pipeline.html",
        {
            "title": f"{project} pipeline {number}",
            "crumbs": [*project_crumbs(vcs, org, project), Crumb(f"Pipeline {number}")],
            "pipeline": pipeline,
            "base": base,
            "config": config,
            "values": values,
            "parameters": parameters,
            "workflows": drawn,
            "may_approve": may_approve,
        },
    )


def parse_parameters(text: str) -> dict[str, Any]:
    """``name=value`` lines as pipeline parameters: ``true``/``false`` are booleans and whole numbers
    integers, as a config's parameter types expect; anything else is a string."""
    parameters: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise BadRequest(f"parameters: {line.strip()!r} is not name=value.")
        value = value.strip()
        parsed: Any = value
        if value in ("true", "false"):
            parsed = value == "true"
        elif re.fullmatch(r"-?[0-9]{1,18}", value):
            parsed = int(value)
        parameters[name.strip()] = parsed
    return parameters


@router.post("/pipelines/{vcs}/{org}/{project}/trigger")
async def trigger_pipeline(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    project: str,
    branch: Annotated[str, Form()] = "",
    parameters: Annotated[str, Form()] = "",
) -> Response:
    """The API's triggerPipeline, step by step as its endpoint takes them: resolve the ref outside any
    unit of work, create in one, start the compile after the commit."""
    database: Database = request.app.state.database
    pipelines: PipelineService = request.app.state.pipeline_service
    try:
        body = TriggerPipeline(branch=branch.strip() or None, parameters=parse_parameters(parameters) or None)
    except ValidationError:
        raise BadRequest("branch: not a branch name.") from None
    async with database.reading() as session:
        prepared = await pipelines.prepare_trigger(session, browser.principal, (vcs, org, project), body)
    resolved = await pipelines.resolve(prepared)
    async with database.writing() as session:
        created = await pipelines.create_pipeline(session, browser.principal, prepared, resolved)
    pipelines.start(created["id"])
    return RedirectResponse(
        f"/pipelines/{vcs}/{org}/{project}/{created['number']}", status_code=303, headers=SECURITY_HEADERS
    )


@router.get("/pipelines/{vcs}/{org}/{project}/{number}")
async def pipeline_by_number(
    request: Request, principal: Session, vcs: str, org: str, project: str, number: int
) -> Response:
    return await pipeline_page(request, principal, (vcs, org, project), number, None)


@router.get("/pipelines/{vcs}/{org}/{project}/{number}/workflows/{workflow_id}")
async def workflow_page(
    request: Request, principal: Session, vcs: str, org: str, project: str, number: int, workflow_id: uuid.UUID
) -> Response:
    """CircleCI's workflow URL: the pipeline's page, that workflow first and marked."""
    return await pipeline_page(request, principal, (vcs, org, project), number, str(workflow_id))


@router.post("/pipelines/{vcs}/{org}/{project}/{number}/workflows/{workflow_id}/approve/{approval_request_id}")
async def approve(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    project: str,
    number: int,
    workflow_id: uuid.UUID,
    approval_request_id: uuid.UUID,
) -> Response:
    database: Database = request.app.state.database
    workflows: WorkflowService = request.app.state.workflow_service
    async with database.writing() as session:
        await workflows.approve(session, browser.principal, workflow_id, approval_request_id)
    back = f"/pipelines/{vcs}/{org}/{project}/{number}/workflows/{workflow_id}"
    return RedirectResponse(back, status_code=303, headers=SECURITY_HEADERS)


@router.get("/pipelines/{vcs}/{org}/{project}/{number}/workflows/{workflow_id}/jobs/{job_number}")
async def job_page(
    request: Request,
    principal: Session,
    vcs: str,
    org: str,
    project: str,
    number: int,
    workflow_id: uuid.UUID,
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
