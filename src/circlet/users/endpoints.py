"""HTTP operations of the User tag."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.errors import NotFound
from circlet.http.responses import json_response
from circlet.http.routing import api_router, lean_get, public_base_url
from circlet.users import service
from circlet.users.avatars import (
    AVATAR_CACHE_CONTROL,
    AVATAR_KEY,
    AVATAR_PATH,
    avatar_url,
    identicon,
)

router = api_router("User")
avatars_router = APIRouter()
Caller = Annotated[Principal, Depends(authenticate)]


@lean_get(router, "/me", operation_id="getCurrentUser")
async def get_current_user(request: Request, caller: Annotated[Principal, Depends(authenticate)]) -> Response:
    avatar = avatar_url(public_base_url(request), caller.user_id, caller.avatar_url)
    return json_response({"id": caller.user_id, "login": caller.login, "name": caller.name, "avatar_url": avatar})


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
    avatar = avatar_url(public_base_url(request), user.id, user.avatar_url)
    return json_response({"id": user.id, "login": user.login, "name": user.name, "avatar_url": avatar})


@avatars_router.get(AVATAR_PATH, include_in_schema=False)
async def get_avatar(request: Request, key: str) -> Response:
    """A user's identicon: public, as CircleCI's avatar URLs are, and it reveals only the id in its path."""
    if not AVATAR_KEY.fullmatch(key):
        raise NotFound("Avatar not found.")
    svg, etag = identicon(key)
    # An SVG opened on its own is a document: no script of any origin may run in it.
    headers = {
        "ETag": etag,
        "Cache-Control": AVATAR_CACHE_CONTROL,
        "Content-Security-Policy": "default-src 'none'",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(svg, media_type="image/svg+xml", headers=headers)
