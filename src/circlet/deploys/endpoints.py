"""HTTP operations of the Deploy and Rollback tags."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.deploys.schemas import Rollback
from circlet.deploys.service import DeployService
from circlet.http.responses import json_response
from circlet.http.routing import api_router

router = api_router("Deploy")
rollback_router = api_router("Rollback")
Caller = Annotated[Principal, Depends(authenticate)]
OrgId = Annotated[str, Query(alias="org-id")]
PageSize = Annotated[int, Query(alias="page-size")]
PageToken = Annotated[str | None, Query(alias="page-token")]


def _parts(request: Request) -> tuple[Database, DeployService]:
    state = request.app.state
    return state.database, state.deploy_service


@router.get("/deploy/environments", operation_id="listEnvironments")
async def list_environments(
    request: Request, caller: Caller, org_id: OrgId, page_size: PageSize, page_token: PageToken = None
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_environments(session, caller, org_id, page_size, page_token)
    return json_response(body)


@router.get("/deploy/environments/{environment_id}", operation_id="getEnvironment")
async def get_environment(request: Request, caller: Caller, environment_id: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_environment(session, caller, environment_id)
    return json_response(body)


@router.get("/deploy/components", operation_id="listComponents")
async def list_components(
    request: Request,
    caller: Caller,
    org_id: OrgId,
    page_size: PageSize,
    project_id: Annotated[str | None, Query(alias="project-id")] = None,
    page_token: PageToken = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_components(session, caller, org_id, project_id, page_size, page_token)
    return json_response(body)


@router.get("/deploy/components/{component_id}", operation_id="getComponent")
async def get_component(request: Request, caller: Caller, component_id: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_component(session, caller, component_id)
    return json_response(body)


@router.get("/deploy/components/{component_id}/versions", operation_id="listComponentVersions")
async def list_component_versions(
    request: Request,
    caller: Caller,
    component_id: str,
    environment_id: Annotated[str | None, Query(alias="environment-id")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_versions(session, caller, component_id, environment_id)
    return json_response(body)


@rollback_router.post("/projects/{project_id}/rollback", operation_id="rollbackProject")
async def rollback_project(request: Request, caller: Caller, project_id: str, body: Rollback) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        plan = await service.plan_rollback(session, caller, project_id, body)
    resolved = await service.pipelines.resolve(plan.trigger) if plan.trigger is not None else None
    async with database.writing() as session:
        created, pipeline_id = await service.start_rollback(session, caller, plan, resolved)
    if pipeline_id is not None:
        service.pipelines.start(pipeline_id)
    return json_response(created, 202)
