"""HTTP operations of API v1.1 (``/api/v1.1``): a job (a "build") with its steps, and a step's output;
a project's settings and its additional SSH keys (``ssh-key``). And the private operations real
clients use (the CircleCI MCP server): a step's output as plain text (``/api/private/output/raw/...``)
and the projects a user follows (``/api/private/me/followed-projects``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from circlet.api_v1.schemas import AddSshKey, DeleteSshKey
from circlet.api_v1.service import LegacyService, TailCursor
from circlet.auth import Principal, authenticate, token_from_request
from circlet.db.engine import Database
from circlet.http.errors import BadRequest, NotFound
from circlet.http.responses import json_response, message
from circlet.projects.ssh_keys.service import SshKeyService

router = APIRouter(prefix="/api/v1.1", tags=["Legacy"])
private_router = APIRouter(prefix="/api/private", tags=["Legacy"])
Caller = Annotated[Principal, Depends(authenticate)]
PROJECT = "/project/{vcs}/{organization}/{project}"
BUILD = PROJECT + "/{build_num:int}"


# The tail polls the database: at once while output flows, then backing off to a second when idle.
TAIL_FIRST_WAIT = 0.1
TAIL_MAX_WAIT = 1.0
# An idle stream sends a comment this often, so proxies keep it open and a dead client is noticed.
TAIL_KEEPALIVE_SECONDS = 15.0
# The key the tail sleeps on in the task signal: nothing wakes it but the server's shutdown.
TAIL_WAKE_KEY = "circlet:output-tail"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ShutdownSignal(Protocol):
    """What the tail uses of the engine's task signal (``engine.queue.TaskSignal``): ``closed`` and a
    wait that returns at once when the server begins shutting down."""

    closed: bool

    def generation(self, resource_class: str) -> int: ...

    async def wait(self, resource_class: str, seen: int, timeout: float) -> None: ...


def _parts(request: Request) -> tuple[Database, LegacyService]:
    state = request.app.state
    return state.database, state.legacy_service


def _ssh_keys(request: Request) -> tuple[Database, SshKeyService]:
    # The keys belong to the Project tag's rules (roles, sealing); v1.1 is only how they are reached,
    # so the service is a thin one over the app's ProjectService rather than state of its own.
    state = request.app.state
    return state.database, SshKeyService(state.project_service)


@router.get(PROJECT + "/settings", include_in_schema=False)
async def project_settings(request: Request, caller: Caller, vcs: str, organization: str, project: str) -> Response:
    """The v1.1 project settings, with the fields circlet has, ``ssh_keys`` among them."""
    database, service = _ssh_keys(request)
    async with database.reading() as session:
        body = await service.settings(session, caller, (vcs, organization, project))
    return json_response(body)


@router.post(PROJECT + "/ssh-key", include_in_schema=False)
async def add_ssh_key(
    request: Request, caller: Caller, vcs: str, organization: str, project: str, body: AddSshKey
) -> Response:
    """Adds an SSH key (``{"hostname", "private_key"}``); answers with its public half and fingerprints."""
    database, service = _ssh_keys(request)
    async with database.writing() as session:
        created = await service.add(session, caller, (vcs, organization, project), body.hostname, body.private_key)
    return json_response(created, 201)


@router.delete(PROJECT + "/ssh-key", include_in_schema=False)
async def delete_ssh_key(
    request: Request, caller: Caller, vcs: str, organization: str, project: str, body: DeleteSshKey
) -> Response:
    """Removes an SSH key by ``{"fingerprint", "hostname"}`` (MD5 or SHA256 form)."""
    database, service = _ssh_keys(request)
    async with database.writing() as session:
        await service.delete(session, caller, (vcs, organization, project), body.fingerprint, body.hostname)
    return message("SSH key deleted.")


@router.get(BUILD, include_in_schema=False)
async def build(
    request: Request, caller: Caller, vcs: str, organization: str, project: str, build_num: int
) -> Response:
    """A job's details in the v1.1 build shape, with one action per parallel index of each step."""
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.build(session, caller, (vcs, organization, project), build_num)
    return json_response(body)


async def output_reader(
    request: Request, vcs: str, organization: str, project: str, build_num: int, step: int, index: int
) -> Principal:
    """Who reads an ``output_url``: the caller of a token, as everywhere; else, for a signed URL (as
    the job's details give it, fetched without a token as CircleCI's are), the user it was made for."""
    query = request.query_params
    if token_from_request(request) or "signature" not in query:
        return await authenticate(request)
    database, service = _parts(request)
    path = f"/api/v1.1/project/{vcs}/{organization}/{project}/{build_num}/output/{step}/{index}"
    user_id = service.output_urls.signer(path, query.get("expires"), query.get("signer"), query.get("signature"))
    async with database.reading() as session:
        return await service.signed_reader(session, user_id)


@router.get(BUILD + "/output/{step:int}/{index:int}", include_in_schema=False)
async def output(
    request: Request,
    reader: Annotated[Principal, Depends(output_reader)],
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
        body = await service.output(session, reader, (vcs, organization, project), build_num, step, index)
    return json_response(body)


@private_router.get("/me/followed-projects", include_in_schema=False)
async def followed_projects(request: Request, caller: Caller) -> Response:
    """Every project of the caller's organizations (circlet has no following; docs/compatibility.md)."""
    state = request.app.state
    async with state.database.reading() as session:
        body = await state.project_service.followed_projects(session, caller)
    return json_response(body)


RAW_OUTPUT = "/output/raw/{vcs}/{organization}/{project}/{build_num:int}"
PLAIN_TEXT = "text/plain; charset=utf-8"


@private_router.get(RAW_OUTPUT + "/{stream}/{index:int}/{step:int}", include_in_schema=False)
async def raw_output(
    request: Request,
    caller: Caller,
    vcs: str,
    organization: str,
    project: str,
    build_num: int,
    stream: str,
    index: int,
    step: int,
) -> Response:
    """A step's ``output`` or ``error`` stream of one parallel index as plain text (parallel index
    first, then step, as CircleCI's path has them). ``error`` is empty: circlet keeps a step's stdout
    and stderr as one stream, in order (docs/compatibility.md); it answers the same 404s."""
    if stream not in ("output", "error"):
        raise NotFound(f"No {stream} stream: output or error.")
    database, service = _parts(request)
    async with database.reading() as session:
        data, _ = await service.step_output(session, caller, (vcs, organization, project), build_num, step, index)
    text = data.decode("utf-8", "replace") if stream == "output" else ""
    return Response(text, media_type=PLAIN_TEXT)


def _cursor(request: Request) -> int:
    """The id of the last event the client has: ``Last-Event-ID`` (what an EventSource sends when it
    reconnects, so it wins over the URL it reconnects to), else ``?after=``, else 0 (from the start)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadRequest("Last-Event-ID and after must be an event id (a non-negative integer).")
    return int(raw)


def _event(kind: str, body: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n".encode() if event_id is not None else b""
    return head + b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


@router.get(BUILD + "/output/{step:int}/{index:int}/stream", include_in_schema=False)
async def output_stream(
    request: Request,
    caller: Caller,
    vcs: str,
    organization: str,
    project: str,
    build_num: int,
    step: int,
    index: int,
) -> Response:
    """A live tail of an action's output as server-sent events: ``output`` events (id: the output
    row's id; data: ``{"message", "type", "time"}``) from the cursor on, as they arrive, then one
    ``end`` event (``{"status", "exit_code"}``) when the step ends. The stream also ends when the
    client leaves (Starlette cancels it) or the server shuts down (the client reconnects with its
    ``Last-Event-ID``)."""
    database, service = _parts(request)
    after = _cursor(request)
    async with database.reading() as session:
        task_id = await service.tail_target(session, caller, (vcs, organization, project), build_num, step, index)
        cursor = await service.tail_start(session, task_id, step, after)
    signal: ShutdownSignal = request.app.state.task_signal
    return StreamingResponse(
        _tail(database, service, signal, task_id, step, cursor), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _tail(
    database: Database,
    service: LegacyService,
    signal: ShutdownSignal,
    task_id: uuid.UUID,
    step: int,
    cursor: TailCursor,
) -> AsyncIterator[bytes]:
    # One short read per poll: a stream never holds a session (a connection, on PostgreSQL) while
    # it waits, however long the step runs.
    wait, idle = TAIL_FIRST_WAIT, 0.0
    while not signal.closed:
        async with database.reading() as session:
            poll = await service.tail_poll(session, task_id, step, cursor)
        for event_id, body in poll.events:
            yield _event("output", body, event_id)
        if poll.end is not None:
            yield _event("end", poll.end)
            return
        if poll.events:
            wait, idle = TAIL_FIRST_WAIT, 0.0
        if poll.more:
            continue
        if idle >= TAIL_KEEPALIVE_SECONDS:
            yield b": keep-alive\n\n"
            idle = 0.0
        await signal.wait(TAIL_WAKE_KEY, signal.generation(TAIL_WAKE_KEY), wait)
        idle += wait
        wait = min(wait * 2, TAIL_MAX_WAIT)
