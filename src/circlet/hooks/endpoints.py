"""Inbound hooks: a forge's deliveries (`POST /hooks/{github|gitlab|gitea}/{project_id}`) and
custom webhooks (`POST /hooks/custom/{trigger_id}?secret=...`). Outside the API: the sender's
proof is the project's or the trigger's secret, not a token.

A delivery is three steps around the git work, as a trigger through the API: a read (verify,
match triggers), the fetch, one write (claim the delivery, record the pipelines); the engine
compiles them after the commit.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from circlet.db.engine import Database
from circlet.hooks.events import FORGES
from circlet.hooks.service import Answer, HookService
from circlet.http.errors import NotFound
from circlet.http.responses import json_response

router = APIRouter(prefix="/hooks", include_in_schema=False)


def _parts(request: Request) -> tuple[Database, HookService]:
    state = request.app.state
    return state.database, state.hook_service


@router.post("/custom/{trigger_id}")
async def custom_webhook(request: Request, trigger_id: str, secret: str = "") -> Response:
    database, service = _parts(request)
    body = await request.body()
    async with database.reading() as session:
        plan = await service.plan_webhook(session, trigger_id, secret, body)
    resolved = await service.pipelines.resolve(plan.request)
    async with database.writing() as session:
        created = await service.pipelines.create_pipeline(session, None, plan.request, resolved, origin=plan.origin)
    service.pipelines.start(created["id"])
    return json_response(created, 201)


@router.post("/{forge}/{project_id}")
async def forge_delivery(request: Request, forge: str, project_id: str) -> Response:
    if forge not in FORGES:
        raise NotFound("No such hook.")
    database, service = _parts(request)
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    async with database.reading() as session:
        plan = await service.plan_delivery(session, forge, project_id, headers, body)
    if isinstance(plan, Answer):
        return json_response({"message": plan.message}, plan.status)
    built = await service.build(plan)
    if isinstance(built, Answer):
        return json_response({"message": built.message}, built.status)
    async with database.writing() as session:
        created = await service.record(session, plan, built)
    if isinstance(created, Answer):
        return json_response({"message": created.message}, created.status)
    service.start(created)
    return json_response({"message": "Pipeline created.", "pipelines": created}, 201)
