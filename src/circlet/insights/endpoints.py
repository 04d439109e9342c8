"""HTTP operations of the Insights tag.

A project slug is three path segments (``gh/org/repo``; ``%2F`` arrives decoded), an organization slug
two. The page and time-series routes come first: their literal first segment would otherwise be read
as a provider.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response
from circlet.http.routing import api_router
from circlet.insights.schemas import AllBranches, Branch, EndDate, Names, PageToken, ReportingWindow, StartDate
from circlet.insights.service import InsightsService

router = api_router("Insights")
Caller = Annotated[Principal, Depends(authenticate)]
PROJECT = "/insights/{provider}/{organization}/{project}"
WORKFLOW = PROJECT + "/workflows/{workflow_name}"


def _parts(request: Request) -> tuple[Database, InsightsService]:
    state = request.app.state
    return state.database, state.insights_service


@router.get("/insights/pages/{provider}/{organization}/{project}/summary", operation_id="getProjectWorkflowsPageData")
async def project_page(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    reporting_window: ReportingWindow = None,
    branches: Names = None,
    workflow_names: Annotated[list[str] | None, Query(alias="workflow-names")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.project_page(
            session, caller, (provider, organization, project), reporting_window, branches or [], workflow_names or []
        )
    return json_response(body)


@router.get(
    "/insights/time-series/{provider}/{organization}/{project}/workflows/{workflow_name}/jobs",
    operation_id="getJobTimeseries",
)
async def job_timeseries(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: str,
    branch: Branch = None,
    granularity: Annotated[str | None, Query()] = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.job_timeseries(
            session, caller, (provider, organization, project), workflow_name, branch, granularity, start_date, end_date
        )
    return json_response(body)


@router.get("/insights/{provider}/{organization}/summary", operation_id="getOrgSummaryData")
async def org_summary(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    reporting_window: ReportingWindow = None,
    project_names: Annotated[list[str] | None, Query(alias="project-names")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.org_summary(
            session, caller, f"{provider}/{organization}", reporting_window, project_names or []
        )
    return json_response(body)


@router.get(PROJECT + "/branches", operation_id="getAllInsightsBranches")
async def branches(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: Annotated[str | None, Query(alias="workflow-name")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.branches(session, caller, (provider, organization, project), workflow_name)
    return json_response(body)


@router.get(PROJECT + "/flaky-tests", operation_id="getFlakyTests")
async def flaky_tests(request: Request, caller: Caller, provider: str, organization: str, project: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.flaky_tests(session, caller, (provider, organization, project))
    return json_response(body)


@router.get(PROJECT + "/workflows", operation_id="getProjectWorkflowMetrics")
async def workflow_metrics(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    page_token: PageToken = None,
    all_branches: AllBranches = None,
    branch: Branch = None,
    reporting_window: ReportingWindow = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.workflow_metrics(
            session, caller, (provider, organization, project), branch, all_branches, reporting_window
        )
    return json_response(body)


@router.get(WORKFLOW, operation_id="getProjectWorkflowRuns")
async def workflow_runs(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: str,
    all_branches: AllBranches = None,
    branch: Branch = None,
    page_token: PageToken = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.workflow_runs(
            session,
            caller,
            (provider, organization, project),
            workflow_name,
            branch,
            all_branches,
            start_date,
            end_date,
            page_token,
        )
    return json_response(body)


@router.get(WORKFLOW + "/jobs", operation_id="getProjectWorkflowJobMetrics")
async def job_metrics(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: str,
    page_token: PageToken = None,
    all_branches: AllBranches = None,
    branch: Branch = None,
    reporting_window: ReportingWindow = None,
    job_name: Annotated[str | None, Query(alias="job-name")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.job_metrics(
            session,
            caller,
            (provider, organization, project),
            workflow_name,
            branch,
            all_branches,
            reporting_window,
            job_name,
        )
    return json_response(body)


@router.get(WORKFLOW + "/summary", operation_id="getWorkflowSummary")
async def workflow_summary(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: str,
    all_branches: AllBranches = None,
    branch: Branch = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.workflow_summary(
            session, caller, (provider, organization, project), workflow_name, branch, all_branches
        )
    return json_response(body)


@router.get(WORKFLOW + "/test-metrics", operation_id="getProjectWorkflowTestMetrics")
async def test_metrics(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    workflow_name: str,
    branch: Branch = None,
    all_branches: AllBranches = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.test_metrics(
            session, caller, (provider, organization, project), workflow_name, branch, all_branches
        )
    return json_response(body)
