"""HTTP operations of the runner protocol, under ``/api/v3/runner`` (docs/runner-protocol.md)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response, StreamingResponse

from circlet.auth import Principal, authenticate
from circlet.blobs import StoredBlob
from circlet.db.engine import Database
from circlet.db.models import Task
from circlet.deploys.schemas import ReleaseMarker
from circlet.engine.wakeups import TaskSignal
from circlet.http.errors import PayloadTooLarge
from circlet.http.responses import json_response
from circlet.runners import service as runner_admin
from circlet.runners.schemas import Claim, Complete, CreateResourceClass, CreateRunnerToken, StepEvent
from circlet.runners.service import RunnerService
from circlet.storage.service import StorageService, check_relative_path

router = APIRouter(prefix="/api/v3/runner", tags=["Runner"])
Authorization = Annotated[str | None, Header()]
Caller = Annotated[Principal, Depends(authenticate)]
MAX_OUTPUT_BYTES = 1024 * 1024


def runner_version(user_agent: str) -> str:
    """``circlet-runner/0.1.0`` → ``0.1.0``; another agent's User-Agent as it is."""
    name, _, version = user_agent.partition("/")
    return (version if name == "circlet-runner" else user_agent)[:255]


def _parts(request: Request) -> tuple[Database, RunnerService, TaskSignal]:
    state = request.app.state
    return state.database, state.runner_service, state.task_signal


@router.post("/claim", include_in_schema=False)
async def claim(request: Request, body: Claim, authorization: Authorization = None) -> Response:
    """Claim the oldest queued task of the class, or long-poll up to ``wait_seconds`` for one."""
    database, service, signal = _parts(request)
    async with database.reading() as session:
        runner = await service.runner(session, authorization, body.resource_class)
    version = runner_version(request.headers.get("user-agent", ""))
    address = request.client.host if request.client else ""
    deadline = time.monotonic() + body.wait_seconds
    while True:
        seen = signal.generation(runner.resource_class)
        # A runner that went away while it waited (stopped, restarted, killed) must not be given a
        # task: nobody would read the answer, and the task would wait out its lease, then fail.
        if await request.is_disconnected():
            return Response(status_code=204)
        async with database.writing() as session:
            task = await service.claim(session, runner, body.runner_name, version, address)
        if task is not None:
            return json_response(task)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or signal.closed:
            return Response(status_code=204)
        await signal.wait(runner.resource_class, seen, remaining)


@router.post("/tasks/{task_id}/heartbeat", include_in_schema=False)
async def heartbeat(request: Request, task_id: uuid.UUID, authorization: Authorization = None) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        body = await service.heartbeat(session, task)
    return json_response(body)


@router.post("/tasks/{task_id}/steps/{index}", include_in_schema=False)
async def step_event(
    request: Request, task_id: uuid.UUID, index: int, body: StepEvent, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.step_event(session, task, index, body)
    return json_response({})


@router.post("/tasks/{task_id}/steps/{index}/output", include_in_schema=False)
async def step_output(
    request: Request, task_id: uuid.UUID, index: int, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    data = await request.body()
    if len(data) > MAX_OUTPUT_BYTES:
        raise PayloadTooLarge(f"At most {MAX_OUTPUT_BYTES} bytes of output per call.")
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.output(session, task, index, data)
    return json_response({})


@router.post("/tasks/{task_id}/complete", include_in_schema=False)
async def complete(
    request: Request, task_id: uuid.UUID, body: Complete, authorization: Authorization = None
) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        task = await service.task(session, authorization, task_id)
        await service.complete(session, task, body.status, body.message)
    return json_response({})


@router.get("/tasks", include_in_schema=False)
async def unclaimed(
    request: Request,
    resource_class: Annotated[str, Query(alias="resource-class")],
    authorization: Authorization = None,
) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        await service.runner(session, authorization, resource_class)
        count = await service.depth(session, resource_class, "queued")
    return json_response({"unclaimed_task_count": count})


@router.get("/tasks/running", include_in_schema=False)
async def running(
    request: Request,
    resource_class: Annotated[str, Query(alias="resource-class")],
    authorization: Authorization = None,
) -> Response:
    database, service, _ = _parts(request)
    async with database.reading() as session:
        await service.runner(session, authorization, resource_class)
        count = await service.depth(session, resource_class, "running")
    return json_response({"running_runner_tasks": count})


# -- storage: caches, workspace layers, artifacts, test results -----------------------------------


def _storage(request: Request) -> tuple[Database, RunnerService, StorageService]:
    state = request.app.state
    return state.database, state.runner_service, state.storage_service


async def _running_task(
    session: AsyncSession, service: RunnerService, authorization: str | None, task_id: uuid.UUID
) -> Task:
    task = await service.task(session, authorization, task_id)
    service.require_running(task)
    return task


async def _record(
    request: Request,
    task_id: uuid.UUID,
    authorization: str | None,
    blob: StoredBlob,
    record: Callable[[AsyncSession, Task], Awaitable[None]],
) -> None:
    """Record a stored blob in one unit of work; a refused or failed record deletes the blob."""
    database, service, storage = _storage(request)
    try:
        async with database.writing() as session:
            await record(session, await _running_task(session, service, authorization, task_id))
    except BaseException:
        await storage.discard(blob)
        raise


def _blob_response(storage: StorageService, blob_id: str, size: int) -> Response:
    """The blob as stored (a tar; a tar.gz if stored before issue 6), with its length: a body of known
    length goes out unframed, which a runner reads with less work than a chunked one."""
    headers = {"Content-Length": str(size)}
    return StreamingResponse(storage.stream(blob_id), media_type="application/octet-stream", headers=headers)


@router.get("/tasks/{task_id}/caches", include_in_schema=False)
async def find_cache(
    request: Request, task_id: uuid.UUID, keys: Annotated[list[str], Query()], authorization: Authorization = None
) -> Response:
    """The key of the newest cache matching the first of ``keys`` (comma-separated) that matches."""
    database, service, storage = _storage(request)
    wanted = [key for value in keys for key in value.split(",") if key]
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        key = await storage.find_cache(session, task, wanted)
    return json_response({"key": key})


@router.get("/tasks/{task_id}/caches/{key:path}", include_in_schema=False)
async def get_cache(request: Request, task_id: uuid.UUID, key: str, authorization: Authorization = None) -> Response:
    database, service, storage = _storage(request)
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        cache = await storage.cache(session, task, key)
    return _blob_response(storage, cache.blob_id, cache.size)


@router.head("/tasks/{task_id}/caches/{key:path}", include_in_schema=False)
async def cache_exists(request: Request, task_id: uuid.UUID, key: str, authorization: Authorization = None) -> Response:
    """200 when a cache has exactly this key, else 404 (so a runner skips an upload that would be refused)."""
    database, service, storage = _storage(request)
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        await storage.cache(session, task, key)
    return Response(status_code=200)


@router.put("/tasks/{task_id}/caches/{key:path}", include_in_schema=False)
async def save_cache(request: Request, task_id: uuid.UUID, key: str, authorization: Authorization = None) -> Response:
    """201, or 409 when the key exists (caches are immutable; checked before the body is read)."""
    database, service, storage = _storage(request)
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        await storage.refuse_existing_cache(session, task, key)
    blob = await storage.store(request.stream())
    await _record(request, task_id, authorization, blob, lambda s, t: storage.save_cache(s, t, key, blob))
    return json_response({"key": key, "size": blob.size}, 201)


@router.put("/tasks/{task_id}/workspace", include_in_schema=False)
async def persist_workspace(request: Request, task_id: uuid.UUID, authorization: Authorization = None) -> Response:
    database, service, storage = _storage(request)
    async with database.reading() as session:
        await _running_task(session, service, authorization, task_id)
    blob = await storage.store(request.stream())
    await _record(request, task_id, authorization, blob, lambda s, t: storage.save_layer(s, t, blob))
    return json_response({"size": blob.size}, 201)


@router.get("/tasks/{task_id}/workspace", include_in_schema=False)
async def workspace_layers(request: Request, task_id: uuid.UUID, authorization: Authorization = None) -> Response:
    """The ids of the layers this job sees, in the order to apply them."""
    database, service, storage = _storage(request)
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        layers = await storage.visible_layers(session, task)
    return json_response([layer.id for layer in layers])


@router.get("/tasks/{task_id}/workspace/{layer_id}", include_in_schema=False)
async def workspace_layer(
    request: Request, task_id: uuid.UUID, layer_id: uuid.UUID, authorization: Authorization = None
) -> Response:
    database, service, storage = _storage(request)
    async with database.reading() as session:
        task = await _running_task(session, service, authorization, task_id)
        layer = await storage.layer(session, task, layer_id)
    return _blob_response(storage, layer.blob_id, layer.size)


@router.put("/tasks/{task_id}/artifacts", include_in_schema=False)
async def store_artifact(
    request: Request, task_id: uuid.UUID, path: Annotated[str, Query()], authorization: Authorization = None
) -> Response:
    database, service, storage = _storage(request)
    destination = check_relative_path(path, "path")
    async with database.reading() as session:
        await _running_task(session, service, authorization, task_id)
    blob = await storage.store(request.stream())
    await _record(request, task_id, authorization, blob, lambda s, t: storage.save_artifact(s, t, destination, blob))
    return json_response({"path": destination, "size": blob.size}, 201)


@router.put("/tasks/{task_id}/tests", include_in_schema=False)
async def store_test_results(
    request: Request,
    task_id: uuid.UUID,
    source: Annotated[str, Query(max_length=255)] = "",
    authorization: Authorization = None,
) -> Response:
    """One JUnit XML file, parsed as it streams in; 400 when it is not JUnit XML circlet accepts."""
    database, service, storage = _storage(request)
    async with database.reading() as session:
        await _running_task(session, service, authorization, task_id)
    rows = await storage.parse_test_results(request.stream())
    try:
        async with database.writing() as session:
            task = await _running_task(session, service, authorization, task_id)
            count = await storage.save_test_results(session, task, source, rows)
    finally:
        rows.close()
    return json_response({"tests": count}, 201)


@router.post("/tasks/{task_id}/releases", include_in_schema=False)
async def record_release(
    request: Request, task_id: uuid.UUID, marker: ReleaseMarker, authorization: Authorization = None
) -> Response:
    """A deploy marker of the job (`circleci run release plan|update|log`), as the agent forwards it."""
    database = request.app.state.database
    async with database.writing() as session:
        task = await _running_task(session, request.app.state.runner_service, authorization, task_id)
        recorded = await request.app.state.deploy_service.record_marker(session, task.job_id, marker)
    return json_response(recorded, 201)


# -- CircleCI's runner API, as `circleci runner resource-class|token|instance` calls it -------------
# Personal API tokens (Circle-Token); changes need the organization's admin role.


@router.post("/resource", include_in_schema=False)
async def create_resource_class(request: Request, caller: Caller, body: CreateResourceClass) -> Response:
    database, _, _ = _parts(request)
    async with database.writing() as session:
        created = await runner_admin.create_class(session, caller, body.resource_class, body.description)
    return json_response(created, 201)


@router.get("/resource", include_in_schema=False)
async def list_resource_classes(
    request: Request,
    caller: Caller,
    namespace: Annotated[str | None, Query(max_length=100)] = None,
    org_id: Annotated[uuid.UUID | None, Query(alias="org-id")] = None,
) -> Response:
    database, _, _ = _parts(request)
    async with database.reading() as session:
        body = await runner_admin.list_classes(session, caller, namespace, org_id)
    return json_response(body)


@router.delete("/resource/{class_id}", include_in_schema=False)
async def delete_resource_class(request: Request, caller: Caller, class_id: str) -> Response:
    return await _delete_class(request, caller, class_id, force=False)


@router.delete("/resource/{class_id}/force", include_in_schema=False)
async def force_delete_resource_class(request: Request, caller: Caller, class_id: str) -> Response:
    """Deletes the class and its tokens (the official CLI's `resource-class delete`)."""
    return await _delete_class(request, caller, class_id, force=True)


async def _delete_class(request: Request, caller: Caller, class_id: str, *, force: bool) -> Response:
    database, service, signal = _parts(request)
    async with database.writing() as session:
        resource_class = await runner_admin.delete_class(session, service.orchestrator, caller, class_id, force=force)
        await signal.announce(session, [resource_class])
    return json_response({"message": "Deleted."})


@router.post("/token", include_in_schema=False)
async def create_runner_token(request: Request, caller: Caller, body: CreateRunnerToken) -> Response:
    database, service, _ = _parts(request)
    async with database.writing() as session:
        created = await runner_admin.create_token(session, caller, body.resource_class, body.nickname, service.shared)
    return json_response(created, 201)


@router.get("/token", include_in_schema=False)
async def list_runner_tokens(
    request: Request, caller: Caller, resource_class: Annotated[str, Query(alias="resource-class", max_length=201)]
) -> Response:
    database, _, _ = _parts(request)
    async with database.reading() as session:
        body = await runner_admin.list_tokens(session, caller, resource_class)
    return json_response(body)


@router.delete("/token/{token_id}", include_in_schema=False)
async def delete_runner_token(request: Request, caller: Caller, token_id: str) -> Response:
    database, _, signal = _parts(request)
    async with database.writing() as session:
        resource_class = await runner_admin.revoke_token(session, caller, token_id)
        # A claim long-polling with this token wakes, looks the token up again, and gets its 401.
        await signal.announce(session, [resource_class])
    return json_response({"message": "Deleted."})


@router.get("", include_in_schema=False)
async def list_runner_instances(
    request: Request,
    caller: Caller,
    resource_class: Annotated[str | None, Query(alias="resource-class", max_length=201)] = None,
    namespace: Annotated[str | None, Query(max_length=100)] = None,
    org_id: Annotated[uuid.UUID | None, Query(alias="org-id")] = None,
) -> Response:
    database, _, _ = _parts(request)
    async with database.reading() as session:
        body = await runner_admin.list_instances(session, caller, resource_class, namespace, org_id)
    return json_response(body)
