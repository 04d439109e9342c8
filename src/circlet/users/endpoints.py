"""HTTP operations of the User tag."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Request
from starlette.responses import Response

from circlet.db.engine import Database
from circlet.http.auth import Principal, authenticate
from circlet.http.errors import NotFound
from circlet.http.responses import json_response
from circlet.http.routing import api_router, lean_get
from circlet.users import service

router = api_router("User")
Caller = Annotated[Principal, Depends(authenticate)]


@lean_get(router, "/me", operation_id="getCurrentUser")
async def get_current_user(caller: Annotated[Principal, Depends(authenticate)]) -> Response:
    return json_response(
        {"id": caller.user_id, "login": caller.login, "name": caller.name, "avatar_url": caller.avatar_url}
    )


@lean_get(router, "/me/collaborations", operation_id="getCollaborations")
async def get_collaborations(request: Request, caller: Caller) -> Response:
    database: Database = request.app.state.database
    async with database.reading() as session:
        body = await service.collaborations(session, caller.user_id)
    return json_response(body)


@router.get("/user/{id}", operation_id="getUser")
async def get_user(request: Request, caller: Caller, user_id: Annotated[str, Path(alias="id")]) -> Response:
    database: Database = request.app.state.database
    try:
        parsed = uuid.UUID(user_id)
    except ValueError:
        raise NotFound("User not found.") from None
    async with database.reading() as session:
        user = await service.visible_user(session, caller.user_id, parsed)
    if user is None:
        raise NotFound("User not found.")
    return json_response(
        {"id": user.id, "login": user.login, "name": user.name, "avatar_url": user.avatar_url}
    )
