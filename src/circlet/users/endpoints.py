"""HTTP operations of the User tag."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.responses import Response

from circlet.http.auth import Principal, authenticate
from circlet.http.responses import json_response

router = APIRouter(tags=["User"])


@router.get("/me", operation_id="getCurrentUser")
async def get_current_user(caller: Annotated[Principal, Depends(authenticate)]) -> Response:
    return json_response(
        {"id": caller.user_id, "login": caller.login, "name": caller.name, "avatar_url": caller.avatar_url}
    )
