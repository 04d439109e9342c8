"""HTTP operations of the Usage tag, and the signed download of an export's parts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response
from circlet.http.routing import api_router
from circlet.usage.schemas import CreateUsageExport
from circlet.usage.service import UsageService

router = api_router("Usage")
Caller = Annotated[Principal, Depends(authenticate)]


def _parts(request: Request) -> tuple[Database, UsageService]:
    state = request.app.state
    return state.database, state.usage_service


@router.post("/organizations/{org_id}/usage_export_job", operation_id="createUsageExport")
async def create_usage_export(request: Request, caller: Caller, org_id: str, body: CreateUsageExport) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create(session, caller, org_id, body.start, body.end, body.shared_org_ids)
    service.start(created["usage_export_job_id"])
    return json_response(created, 201)


@router.get("/organizations/{org_id}/usage_export_job/{usage_export_job_id}", operation_id="getUsageExport")
async def get_usage_export(request: Request, caller: Caller, org_id: str, usage_export_job_id: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get(session, caller, org_id, usage_export_job_id)
    return json_response(body)


@router.get("/usage-exports/{export_id}/{part:int}.csv.gz", include_in_schema=False)
async def download_usage_export(
    request: Request,
    export_id: str,
    part: int,
    expires: Annotated[str | None, Query()] = None,
    signature: Annotated[str | None, Query()] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        blob_id = await service.download(session, export_id, part, expires, signature)
    return StreamingResponse(
        service.blobs.get(blob_id),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="usage-{export_id}-{part}.csv.gz"'},
    )
