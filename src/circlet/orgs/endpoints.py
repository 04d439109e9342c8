"""HTTP operations of the Organization tag.

``{org-slug-or-id}`` is a UUID (one path segment) or a slug (two, ``gh/acme``; a client may also
send it URL-escaped, which arrives here decoded), so the routes take it as a ``path`` parameter.
The allow-list routes come before the bare organization route, which would otherwise match them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from circlet.auth import Authenticator, Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router
from circlet.mirrors.git_mirror import GitMirrors
from circlet.orgs import service
from circlet.orgs.schemas import CreateOrbAllowListEntry, CreateOrganization

router = api_router("Organization")
Caller = Annotated[Principal, Depends(authenticate)]


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _forget_roles(request: Request) -> None:
    """Memberships changed: cached principals of this process must be looked up again."""
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.forget()


@router.post("/organization", operation_id="createOrganization")
async def create_organization(request: Request, caller: Caller, body: CreateOrganization) -> Response:
    async with _database(request).writing() as session:
        only_operators = request.app.state.settings.org_creation == "operators"
        created = await service.create_org(session, caller, body.name, body.vcs_type, operators_only=only_operators)
    _forget_roles(request)
    return json_response(created, 201)


@router.get("/organization/{org_slug_or_id:path}/url-orb-allow-list", operation_id="listURLOrbAllowListEntries")
async def list_url_orb_allow_list(request: Request, caller: Caller, org_slug_or_id: str) -> Response:
    async with _database(request).reading() as session:
        body = await service.list_orb_allow_list(session, caller, org_slug_or_id)
    return json_response(body)


@router.post("/organization/{org_slug_or_id:path}/url-orb-allow-list", operation_id="createURLOrbAllowListEntry")
async def create_url_orb_allow_list_entry(
    request: Request, caller: Caller, org_slug_or_id: str, body: CreateOrbAllowListEntry
) -> Response:
    async with _database(request).writing() as session:
        created = await service.add_orb_allow_list_entry(
            session, caller, org_slug_or_id, body.name, body.prefix, body.auth
        )
    return json_response(created)


@router.delete(
    "/organization/{org_slug_or_id:path}/url-orb-allow-list/{entry_id}",
    operation_id="removeURLOrbAllowListEntry",
)
async def remove_url_orb_allow_list_entry(
    request: Request, caller: Caller, org_slug_or_id: str, entry_id: str
) -> Response:
    async with _database(request).writing() as session:
        removed = await service.remove_orb_allow_list_entry(session, caller, org_slug_or_id, entry_id)
    return json_response(removed)


@router.delete("/organization/{org_slug_or_id:path}", operation_id="deleteOrganization")
async def delete_organization(request: Request, caller: Caller, org_slug_or_id: str) -> Response:
    async with _database(request).writing() as session:
        project_ids = await service.delete_org(session, caller, org_slug_or_id)
    _forget_roles(request)
    mirrors: GitMirrors = request.app.state.mirrors
    mirrors.remove(project_ids)
    return message("Organization deleted.", 202)
