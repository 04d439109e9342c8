"""HTTP operations of the Job tag."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router
from circlet.jobs.service import JobService

router = api_router("Job")
Caller = Annotated[Principal, Depends(authenticate)]
SLUG = "/project/{provider}/{organization}/{project}"
PageToken = Annotated[str | None, Query(alias="page-token")]


def _parts(request: Request) -> tuple[Database, JobService]:
    state = request.app.state
    return state.database, state.job_service


@router.get(SLUG + "/job/{job_number:int}", operation_id="getJobDetails")
async def job_details(
    request: Request, caller: Caller, provider: str, organization: str, project: str, job_number: int
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.details(session, caller, (provider, organization, project), job_number)
    return json_response(body)


@router.post(SLUG + "/job/{job_number:int}/cancel", operation_id="cancelJobByJobNumber")
async def cancel_by_number(
    request: Request, caller: Caller, provider: str, organization: str, project: str, job_number: int
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.cancel_by_number(session, caller, (provider, organization, project), job_number)
    return message("Accepted.")


@router.post("/jobs/{job_id}/cancel", operation_id="cancelJobByJobID")
async def cancel_by_id(request: Request, caller: Caller, job_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.cancel_by_id(session, caller, job_id)
    return message("Accepted.")


@router.get(SLUG + "/{job_number:int}/artifacts", operation_id="getJobArtifacts")
async def artifacts(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    job_number: int,
    page_token: PageToken = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.artifacts(session, caller, (provider, organization, project), job_number, page_token)
    return json_response(body)


@router.get(SLUG + "/{job_number:int}/artifacts/{node_index:int}/{path:path}", include_in_schema=False)
async def artifact(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    job_number: int,
    node_index: int,
    path: str,
) -> Response:
    """An artifact's bytes, for the ``url`` of the listing (the caller must be able to see the project)."""
    database, service = _parts(request)
    async with database.reading() as session:
        stream = await service.artifact_stream(
            session, caller, (provider, organization, project), job_number, node_index, path
        )
    return StreamingResponse(stream, media_type="application/octet-stream", headers=attachment_headers(path))


def attachment_headers(path: str) -> dict[str, str]:
    """An artifact is a download, never a page of this origin: no browser renders or sniffs it."""
    name = path.rsplit("/", 1)[-1]
    encoded = quote(name, safe="")
    # A plain name is given as is; any other (quotes, non-ASCII, controls) only percent-encoded (RFC 6266).
    disposition = f'attachment; filename="{name}"' if encoded == name else f"attachment; filename*=UTF-8''{encoded}"
    return {"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"}


@router.get(SLUG + "/{job_number:int}/tests", operation_id="getTests")
async def tests(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    job_number: int,
    page_token: PageToken = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.tests(session, caller, (provider, organization, project), job_number, page_token)
    return json_response(body)
