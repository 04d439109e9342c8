"""HTTP operations of the runner protocol, under ``/api/v3/runner`` (docs/runner-protocol.md)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from circlet.db.engine import Database
from circlet.engine.queue import TaskSignal
from circlet.http.errors import PayloadTooLarge
from circlet.http.responses import json_response
from circlet.runners.schemas import Claim, Complete, StepEvent
from circlet.runners.service import RunnerService

router = APIRouter(prefix="/api/v3/runner", tags=["Runner"])
Authorization = Annotated[str | None, Header()]
MAX_OUTPUT_BYTES = 1024 * 1024


def _parts(request: Request) -> tuple[Database, RunnerService, TaskSignal]:
    state = request.app.state
    return state.database, state.runner_service, state.task_signal


@router.post("/claim", include_in_schema=False)
async def claim(request: Request, body: Claim, authorization: Authorization = None) -> Response:
    """Claim the oldest queued task of the class, or long-poll up to ``wait_seconds`` for one."""
    database, service, signal = _parts(request)
    async with database.reading() as session:
        runner = await service.runner(session, authorization, body.resource_class)
    deadline = time.monotonic() + body.wait_seconds
    while True:
        seen = signal.generation(runner.resource_class)
        async with database.writing() as session:
            task = await service.claim(session, runner, body.runner_name)
        if task is not None:
            return json_response(task)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or signal.closed or await request.is_disconnected():
            return Response(status_code=204)
        await signal.wait(runner.resource_class, seen, remaining)


@router.post("/tasks/{task_id}/heartbeat", include_in_schema=False)
async def heartbeat(request: Request, task_id: uuid.UUID, authorization: Authorization = None) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        body = await service.heartbeat(session, task)
    return json_response(body)


@router.post("/tasks/{task_id}/steps/{index}", include_in_schema=False)
async def step_event(
    request: Request, task_id: uuid.UUID, index: int, body: StepEvent, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.step_event(session, task, index, body)
    return json_response({})


@router.post("/tasks/{task_id}/steps/{index}/output", include_in_schema=False)
async def step_output(
    request: Request, task_id: uuid.UUID, index: int, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    data = await request.body()
    if len(data) > MAX_OUTPUT_BYTES:
        raise PayloadTooLarge(f"At most {MAX_OUTPUT_BYTES} bytes of output per call.")
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.output(session, task, index, data)
    return json_response({})


@router.post("/tasks/{task_id}/complete", include_in_schema=False)
async def complete(
    request: Request, task_id: uuid.UUID, body: Complete, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.complete(session, task, body.status, body.message)
    return json_response({})


@router.get("/tasks", include_in_schema=False)
async def unclaimed(
    request: Request,
    resource_class: Annotated[str, Query(alias="resource-class")],
    authorization: Authorization = None,
) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        await service.runner(session, authorization, resource_class)
        count = await service.depth(session, resource_class, "queued")
    return json_response({"unclaimed_task_count": count})


@router.get("/tasks/running", include_in_schema=False)
async def running(
    request: Request,
    resource_class: Annotated[str, Query(alias="resource-class")],
    authorization: Authorization = None,
) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        await service.runner(session, authorization, resource_class)
        count = await service.depth(session, resource_class, "running")
    return json_response({"running_runner_tasks": count})
