"""HTTP operations of the Workflow tag."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router
from circlet.workflows.schemas import Rerun
from circlet.workflows.service import WorkflowService

router = api_router("Workflow")
Caller = Annotated[Principal, Depends(authenticate)]


def _parts(request: Request) -> tuple[Database, WorkflowService]:
    state = request.app.state
    return state.database, state.workflow_service


@router.get("/workflow/{workflow_id}", operation_id="getWorkflowById")
async def get_workflow(request: Request, caller: Caller, workflow_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get(session, caller, workflow_id)
    return json_response(body)


@router.get("/workflow/{workflow_id}/job", operation_id="listWorkflowJobs")
async def list_jobs(
    request: Request,
    caller: Caller,
    workflow_id: uuid.UUID,
    page_token: Annotated[str | None, Query(alias="page-token")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.jobs(session, caller, workflow_id, page_token)
    return json_response(body)


@router.post("/workflow/{workflow_id}/approve/{approval_request_id}", operation_id="approvePendingApprovalJobById")
async def approve(request: Request, caller: Caller, workflow_id: uuid.UUID, approval_request_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.approve(session, caller, workflow_id, approval_request_id)
    return message("Accepted.", 202)


@router.post("/workflow/{workflow_id}/cancel", operation_id="cancelWorkflow")
async def cancel(request: Request, caller: Caller, workflow_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.cancel(session, caller, workflow_id)
    return message("Accepted.", 202)


@router.post("/workflow/{workflow_id}/rerun", operation_id="rerunWorkflow")
async def rerun(request: Request, caller: Caller, workflow_id: uuid.UUID, body: Rerun | None = None) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.rerun(session, caller, workflow_id, body or Rerun())
    return json_response(created, 202)
