"""HTTP operations of API v1.1 (``/api/v1.1``): a job (a "build") with its steps, and a step's output."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from circlet.db.engine import Database
from circlet.http.auth import Principal, authenticate
from circlet.http.responses import json_response
from circlet.legacy.service import LegacyService

router = APIRouter(prefix="/api/v1.1", tags=["Legacy"])
Caller = Annotated[Principal, Depends(authenticate)]
BUILD = "/project/{vcs}/{organization}/{project}/{build_num:int}"


def _parts(request: Request) -> tuple[Database, LegacyService]:
    state = request.app.state
    return state.database, state.legacy_service


@router.get(BUILD, include_in_schema=False)
async def build(
    request: Request, caller: Caller, vcs: str, organization: str, project: str, build_num: int
) -> Response:
    """A job's details in the v1.1 build shape, with one action per parallel index of each step."""
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.build(session, caller, (vcs, organization, project), build_num)
    return json_response(body)


@router.get(BUILD + "/output/{step:int}/{index:int}", include_in_schema=False)
async def output(
    request: Request,
    caller: Caller,
    vcs: str,
    organization: str,
    project: str,
    build_num: int,
    step: int,
    index: int,
) -> Response:
    """The ``output_url`` of an action: the step's output as ``[{"message", "type", "time"}]``."""
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.output(session, caller, (vcs, organization, project), build_num, step, index)
    return json_response(body)
