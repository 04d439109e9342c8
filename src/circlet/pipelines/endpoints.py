"""HTTP operations of the Pipeline tag.

A trigger is two units of work around the git work: a read (who may trigger what, which refs),
then, once the mirror has resolved the refs, one write that records the pipeline. The engine
compiles it in the background after that commit.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router, public_base_url
from circlet.pipelines.schemas import ContinuePipeline, RunPipeline, TriggerPipeline
from circlet.pipelines.service import PipelineService

router = api_router("Pipeline")
Caller = Annotated[Principal, Depends(authenticate)]
SLUG = "/project/{provider}/{organization}/{project}"
PageToken = Annotated[str | None, Query(alias="page-token")]


def _parts(request: Request) -> tuple[Database, PipelineService]:
    state = request.app.state
    return state.database, state.pipeline_service


@router.post(SLUG + "/pipeline", operation_id="triggerPipeline", status_code=201)
async def trigger_pipeline(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    body: TriggerPipeline | None = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        prepared = await service.prepare_trigger(
            session, caller, (provider, organization, project), body or TriggerPipeline()
        )
    resolved = await service.resolve(prepared)
    async with database.writing() as session:
        created = await service.create_pipeline(session, caller, prepared, resolved)
    service.start(created["id"])
    return json_response(created, 201)


@router.post(SLUG + "/pipeline/run", operation_id="triggerPipelineRun", status_code=201)
async def run_pipeline(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    body: RunPipeline | None = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        prepared = await service.prepare_run(session, caller, (provider, organization, project), body or RunPipeline())
    resolved = await service.resolve(prepared)
    async with database.writing() as session:
        created = await service.create_pipeline(session, caller, prepared, resolved)
    service.start(created["id"])
    return json_response(created, 201)


@router.post("/pipeline/continue", operation_id="continuePipeline")
async def continue_pipeline(request: Request, body: ContinuePipeline) -> Response:
    """The continuation key is the credential (a setup job holds it, not a personal token)."""
    database, service = _parts(request)
    async with database.reading() as session:
        target = await service.continuation_target(session, body.continuation_key)
    compiled = await service.compile_continuation(target, body.configuration, body.parameters)
    async with database.writing() as session:
        await service.continue_pipeline(session, body.continuation_key, body.configuration, compiled)
    return message("Pipeline continued.")


@router.get("/pipeline", operation_id="listPipelines")
async def list_pipelines(
    request: Request,
    caller: Caller,
    org_slug: Annotated[str | None, Query(alias="org-slug")] = None,
    mine: bool = False,
    page_token: PageToken = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_for_org(session, caller, org_slug, mine, page_token, public_base_url(request))
    return json_response(body)


@router.get("/pipeline/{pipeline_id}", operation_id="getPipelineById")
async def get_pipeline(request: Request, caller: Caller, pipeline_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get(session, caller, pipeline_id, public_base_url(request))
    return json_response(body)


@router.get("/pipeline/{pipeline_id}/config", operation_id="getPipelineConfigById")
async def get_pipeline_config(request: Request, caller: Caller, pipeline_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.config(session, caller, pipeline_id)
    return json_response(body)


@router.get("/pipeline/{pipeline_id}/values", operation_id="getPipelineValuesById")
async def get_pipeline_values(request: Request, caller: Caller, pipeline_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.values(session, caller, pipeline_id)
    return json_response(body)


@router.get("/pipeline/{pipeline_id}/workflow", operation_id="listWorkflowsByPipelineId")
async def list_workflows(
    request: Request, caller: Caller, pipeline_id: uuid.UUID, page_token: PageToken = None
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.workflows(session, caller, pipeline_id, page_token)
    return json_response(body)


@router.get(SLUG + "/pipeline", operation_id="listPipelinesForProject")
async def list_project_pipelines(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    branch: str | None = None,
    page_token: PageToken = None,
) -> Response:
    return await _project_pipelines(request, caller, (provider, organization, project), branch, False, page_token)


@router.get(SLUG + "/pipeline/mine", operation_id="listMyPipelines")
async def list_my_pipelines(
    request: Request, caller: Caller, provider: str, organization: str, project: str, page_token: PageToken = None
) -> Response:
    return await _project_pipelines(request, caller, (provider, organization, project), None, True, page_token)


async def _project_pipelines(
    request: Request,
    caller: Principal,
    slug: tuple[str, str, str],
    branch: str | None,
    mine: bool,
    page_token: str | None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_for_project(
            session, caller, slug, branch=branch, mine=mine, page_token=page_token, base_url=public_base_url(request)
        )
    return json_response(body)


@router.get(SLUG + "/pipeline/{pipeline_number:int}", operation_id="getPipelineByNumber")
async def get_pipeline_by_number(
    request: Request, caller: Caller, provider: str, organization: str, project: str, pipeline_number: int
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_by_number(
            session, caller, (provider, organization, project), pipeline_number, public_base_url(request)
        )
    return json_response(body)
