"""HTTP operations of the Groups tag."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.groups.schemas import CreateGroup
from circlet.groups.service import GroupService, group_body
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router

router = api_router("Groups")
Caller = Annotated[Principal, Depends(authenticate)]


def _parts(request: Request) -> tuple[Database, GroupService]:
    state = request.app.state
    return state.database, state.group_service


@router.get("/organizations/{org_id}/groups", operation_id="getOrganizationGroups")
async def list_groups(
    request: Request,
    caller: Caller,
    org_id: str,
    limit: Annotated[int | None, Query()] = None,
    page_token: Annotated[str | None, Query(alias="page-token")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_groups(session, caller, org_id, limit, page_token)
    return json_response(body)


@router.post("/organizations/{org_id}/groups", operation_id="createOrganizationGroup")
async def create_group(request: Request, caller: Caller, org_id: str, body: CreateGroup) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_group(session, caller, org_id, body.name, body.description)
    return json_response(created, 201)


@router.get("/organizations/{org_id}/groups/{group_id}", operation_id="getGroup")
async def get_group(request: Request, caller: Caller, org_id: str, group_id: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        group = await service.get_group(session, caller, org_id, group_id)
    return json_response(group_body(group))


@router.delete("/organizations/{org_id}/groups/{group_id}", operation_id="deleteGroup")
async def delete_group(request: Request, caller: Caller, org_id: str, group_id: str) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_group(session, caller, org_id, group_id)
    return message("Group deleted.")
