"""HTTP operations of the Context tag."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from pydantic import TypeAdapter
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.contexts.schemas import CreateContext, CreateRestriction, PutEnvironmentVariable
from circlet.contexts.service import ContextService, context_body
from circlet.db.engine import Database
from circlet.http.params import QuerySpec, query_values
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router, lean_get, lean_put

router = api_router("Context")
Caller = Annotated[Principal, Depends(authenticate)]


def _parts(request: Request) -> tuple[Database, ContextService]:
    state = request.app.state
    return state.database, state.context_service


# The list's query parameters are validated by hand (circlet.http.params), for speed.
LIST_CONTEXTS_QUERY: QuerySpec = (
    ("owner-id", TypeAdapter(uuid.UUID | None)),
    ("owner-slug", None),
    ("owner-type", TypeAdapter(Literal["account", "organization"] | None)),
    ("page-token", None),
)


@lean_get(router, "/context", operation_id="listContexts")
async def list_contexts(request: Request, caller: Caller) -> Response:
    owner_id, owner_slug, _owner_type, page_token = query_values(request, LIST_CONTEXTS_QUERY)
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_contexts(
            session, caller, owner_id=owner_id, owner_slug=owner_slug, page_token=page_token
        )
    return json_response(body)


@router.post("/context", operation_id="createContext")
async def create_context(request: Request, caller: Caller, body: CreateContext) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_context(session, caller, body.name, body.owner)
    return json_response(created)


@router.get("/context/{context_id}", operation_id="getContext")
async def get_context(request: Request, caller: Caller, context_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        context = await service.get_context(session, caller, context_id)
    return json_response(context_body(context.id, context.name, context.created_at))


@router.delete("/context/{context_id}", operation_id="deleteContext")
async def delete_context(request: Request, caller: Caller, context_id: uuid.UUID) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_context(session, caller, context_id)
    return message("Context deleted.")


@router.get("/context/{context_id}/environment-variable", operation_id="listEnvironmentVariablesFromContext")
async def list_env_vars(
    request: Request,
    caller: Caller,
    context_id: uuid.UUID,
    page_token: Annotated[str | None, Query(alias="page-token")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_env_vars(session, caller, context_id, page_token)
    return json_response(body)


@lean_put(
    router, "/context/{context_id}/environment-variable/{env_var_name}", operation_id="addEnvironmentVariableToContext"
)
async def put_env_var(
    request: Request, caller: Caller, context_id: uuid.UUID, env_var_name: str, body: PutEnvironmentVariable
) -> Response:
    database, service = _parts(request)
    async with database.fixed_writing() as unit:
        stored = await service.put_env_var(unit, caller, context_id, env_var_name, body.value)
    return json_response(stored)


@router.delete(
    "/context/{context_id}/environment-variable/{env_var_name}",
    operation_id="deleteEnvironmentVariableFromContext",
)
async def delete_env_var(request: Request, caller: Caller, context_id: uuid.UUID, env_var_name: str) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_env_var(session, caller, context_id, env_var_name)
    return message("Environment variable deleted.")


@router.get("/context/{context_id}/restrictions", operation_id="getContextRestrictions")
async def list_restrictions(
    request: Request,
    caller: Caller,
    context_id: uuid.UUID,
    page_token: Annotated[str | None, Query(alias="page-token")] = None,
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_restrictions(session, caller, context_id, page_token)
    return json_response(body)


@router.post("/context/{context_id}/restrictions", operation_id="createContextRestriction")
async def create_restriction(
    request: Request, caller: Caller, context_id: uuid.UUID, body: CreateRestriction
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_restriction(session, caller, context_id, body)
    return json_response(created, 201)


@router.delete("/context/{context_id}/restrictions/{restriction_id}", operation_id="deleteContextRestriction")
async def delete_restriction(
    request: Request, caller: Caller, context_id: uuid.UUID, restriction_id: uuid.UUID
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_restriction(session, caller, context_id, restriction_id)
    return message("Restriction deleted.")
