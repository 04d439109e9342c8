"""HTTP operations of the Pipeline Definition and Trigger tags."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.definitions.schemas import DefinitionBody, TriggerBody
from circlet.definitions.service import DefinitionService
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router, public_base_url

definitions_router = api_router("Pipeline Definition")
triggers_router = api_router("Trigger")
Caller = Annotated[Principal, Depends(authenticate)]


def _parts(request: Request) -> tuple[Database, DefinitionService]:
    state = request.app.state
    return state.database, state.definition_service


DEFINITIONS = "/projects/{project_id}/pipeline-definitions"


@definitions_router.get(DEFINITIONS, operation_id="listPipelineDefinitions")
async def list_definitions(request: Request, caller: Caller, project_id: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_definitions(session, caller, project_id)
    return json_response(body)


@definitions_router.post(DEFINITIONS, operation_id="createPipelineDefinition")
async def create_definition(request: Request, caller: Caller, project_id: str, body: DefinitionBody) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_definition(session, caller, project_id, body)
    return json_response(created)


@definitions_router.get(DEFINITIONS + "/{definition_id}", operation_id="getPipelineDefinition")
async def get_definition(request: Request, caller: Caller, project_id: str, definition_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_definition(session, caller, project_id, definition_id)
    return json_response(body)


@definitions_router.patch(DEFINITIONS + "/{definition_id}", operation_id="updatePipelineDefinition")
async def update_definition(
    request: Request, caller: Caller, project_id: str, definition_id: uuid.UUID, body: DefinitionBody
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        updated = await service.update_definition(session, caller, project_id, definition_id, body)
    return json_response(updated)


@definitions_router.delete(DEFINITIONS + "/{definition_id}", operation_id="deletePipelineDefinition")
async def delete_definition(request: Request, caller: Caller, project_id: str, definition_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_definition(session, caller, project_id, definition_id)
    return message("Pipeline definition deleted.")


@triggers_router.get(DEFINITIONS + "/{definition_id}/triggers", operation_id="listPipelineDefinitionTriggers")
async def list_triggers(request: Request, caller: Caller, project_id: str, definition_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_triggers(session, caller, project_id, definition_id, public_base_url(request))
    return json_response(body)


@triggers_router.post(DEFINITIONS + "/{definition_id}/triggers", operation_id="createTrigger")
async def create_trigger(
    request: Request, caller: Caller, project_id: str, definition_id: uuid.UUID, body: TriggerBody
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_trigger(
            session, caller, project_id, definition_id, body, public_base_url(request)
        )
    return json_response(created)


@triggers_router.get("/projects/{project_id}/triggers/{trigger_id}", operation_id="getTrigger")
async def get_trigger(request: Request, caller: Caller, project_id: str, trigger_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_trigger(session, caller, project_id, trigger_id, public_base_url(request))
    return json_response(body)


@triggers_router.patch("/projects/{project_id}/triggers/{trigger_id}", operation_id="updateTrigger")
async def update_trigger(
    request: Request, caller: Caller, project_id: str, trigger_id: uuid.UUID, body: TriggerBody
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        updated = await service.update_trigger(session, caller, project_id, trigger_id, body, public_base_url(request))
    return json_response(updated)


@triggers_router.delete("/projects/{project_id}/triggers/{trigger_id}", operation_id="deleteTrigger")
async def delete_trigger(request: Request, caller: Caller, project_id: str, trigger_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_trigger(session, caller, project_id, trigger_id)
    return message("Trigger deleted.")
