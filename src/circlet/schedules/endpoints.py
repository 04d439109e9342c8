"""HTTP operations of the Schedule tag. A write wakes this process's scheduler after its commit, so a
schedule due within the minute fires on time without waiting for the scheduler's next look."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router, public_base_url
from circlet.schedules.scheduler import Scheduler
from circlet.schedules.schemas import CreateSchedule, UpdateSchedule
from circlet.schedules.service import ScheduleService

router = api_router("Schedule")
Caller = Annotated[Principal, Depends(authenticate)]
SLUG = "/project/{provider}/{organization}/{project}"


def _parts(request: Request) -> tuple[Database, ScheduleService, Scheduler]:
    state = request.app.state
    return state.database, state.schedule_service, state.scheduler


@router.post(SLUG + "/schedule", operation_id="createSchedule", status_code=201)
async def create_schedule(
    request: Request, caller: Caller, provider: str, organization: str, project: str, body: CreateSchedule
) -> Response:
    database, service, scheduler = _parts(request)
    async with database.writing() as session:
        created = await service.create(
            session, caller, (provider, organization, project), body, public_base_url(request)
        )
    scheduler.wake()
    return json_response(created, 201)


@router.get(SLUG + "/schedule", operation_id="listSchedulesForProject")
async def list_schedules(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    page_token: Annotated[str | None, Query(alias="page-token")] = None,
) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        body = await service.list_for_project(
            session, caller, (provider, organization, project), page_token, public_base_url(request)
        )
    return json_response(body)


@router.get("/schedule/{schedule_id}", operation_id="getScheduleById")
async def get_schedule(request: Request, caller: Caller, schedule_id: uuid.UUID) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        body = await service.get(session, caller, schedule_id, public_base_url(request))
    return json_response(body)


@router.patch("/schedule/{schedule_id}", operation_id="updateSchedule")
async def update_schedule(request: Request, caller: Caller, schedule_id: uuid.UUID, body: UpdateSchedule) -> Response:
    database, service, scheduler = _parts(request)
    async with database.writing() as session:
        updated = await service.update(session, caller, schedule_id, body, public_base_url(request))
    scheduler.wake()
    return json_response(updated)


@router.delete("/schedule/{schedule_id}", operation_id="deleteScheduleById")
async def delete_schedule(request: Request, caller: Caller, schedule_id: uuid.UUID) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        await service.delete(session, caller, schedule_id)
    return message("Schedule deleted.")
