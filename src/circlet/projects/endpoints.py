"""HTTP operations of the Project tag.

A project slug is always three segments, ``{provider}/{organization}/{project}`` (``gh/acme/app``,
``circleci/<org-uuid>/<project-uuid>``); a client may URL-escape its slashes, and the server decodes
them before routing, so ``gh%2Facme%2Fapp`` reaches the same routes. Spelling the three segments out
(rather than one catch-all parameter) keeps ``/project/gh/acme/envvar`` the project named
``envvar`` and never the variables of ``gh/acme``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from starlette.responses import Response

from circlet.auth import Principal, authenticate
from circlet.db.engine import Database
from circlet.http.responses import json_response, message
from circlet.http.routing import api_router, lean_get
from circlet.mirrors.git_mirror import GitMirrors
from circlet.projects.schemas import (
    AdvancedSettings,
    CreateCheckoutKey,
    CreateEnvVar,
    CreateProject,
    ProjectSettingsPatch,
)
from circlet.projects.service import ProjectService, project_body

router = api_router("Project")
Caller = Annotated[Principal, Depends(authenticate)]
SLUG = "/project/{provider}/{organization}/{project}"


def _parts(request: Request) -> tuple[Database, ProjectService]:
    state = request.app.state
    return state.database, state.project_service


@router.post("/organization/{org_slug_or_id:path}/project", operation_id="createProject")
async def create_project(request: Request, caller: Caller, org_slug_or_id: str, body: CreateProject) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_in_org(
            session, caller, org_slug_or_id, body.name, body.vcs_url, body.default_branch
        )
    return json_response(created)


@router.post(SLUG, operation_id="createProject1")
async def create_project_by_slug(
    request: Request, caller: Caller, provider: str, organization: str, project: str
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        settings = await service.create_by_slug(session, caller, provider, organization, project)
    return json_response(settings, 201)


@lean_get(router, SLUG, operation_id="getProjectBySlug")
async def get_project(request: Request, caller: Caller, provider: str, organization: str, project: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        found = await service.find_to_read(session, caller, (provider, organization, project))
    return json_response(project_body(found.project, found.org))


@router.delete(SLUG, operation_id="deleteProjectBySlug")
async def delete_project(request: Request, caller: Caller, provider: str, organization: str, project: str) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        project_id = await service.delete(session, caller, (provider, organization, project))
    mirrors: GitMirrors = request.app.state.mirrors
    mirrors.remove([project_id])
    return message("Project deleted.")


@router.get(SLUG + "/settings", operation_id="getProjectSettings")
async def get_settings(request: Request, caller: Caller, provider: str, organization: str, project: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        settings = await service.get_settings(session, caller, (provider, organization, project))
    return json_response(settings)


@router.patch(SLUG + "/settings", operation_id="patchProjectSettings")
async def patch_settings(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    body: ProjectSettingsPatch,
) -> Response:
    database, service = _parts(request)
    changes = body.advanced or AdvancedSettings()
    async with database.writing() as session:
        settings = await service.patch_settings(session, caller, (provider, organization, project), changes)
    return json_response(settings)


@lean_get(router, SLUG + "/envvar", operation_id="listEnvVars")
async def list_env_vars(request: Request, caller: Caller, provider: str, organization: str, project: str) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_env_vars(session, caller, (provider, organization, project))
    return json_response(body)


@router.post(SLUG + "/envvar", operation_id="createEnvVar")
async def create_env_var(
    request: Request, caller: Caller, provider: str, organization: str, project: str, body: CreateEnvVar
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_env_var(
            session, caller, (provider, organization, project), body.name, body.value
        )
    return json_response(created, 201)


@router.get(SLUG + "/envvar/{name}", operation_id="getEnvVar")
async def get_env_var(
    request: Request, caller: Caller, provider: str, organization: str, project: str, name: str
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_env_var(session, caller, (provider, organization, project), name)
    return json_response(body)


@router.delete(SLUG + "/envvar/{name}", operation_id="deleteEnvVar")
async def delete_env_var(
    request: Request, caller: Caller, provider: str, organization: str, project: str, name: str
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_env_var(session, caller, (provider, organization, project), name)
    return message("Environment variable deleted.")


@router.get(SLUG + "/checkout-key", operation_id="listCheckoutKeys")
async def list_checkout_keys(
    request: Request,
    caller: Caller,
    provider: str,
    organization: str,
    project: str,
    digest: Annotated[Literal["sha256", "md5"], Query()] = "md5",
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.list_checkout_keys(session, caller, (provider, organization, project), digest)
    return json_response(body)


@router.post(SLUG + "/checkout-key", operation_id="createCheckoutKey")
async def create_checkout_key(
    request: Request, caller: Caller, provider: str, organization: str, project: str, body: CreateCheckoutKey
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        created = await service.create_checkout_key(session, caller, (provider, organization, project), body.type)
    return json_response(created, 201)


# A SHA256 fingerprint is base64 and may hold '/', so the fingerprint takes the rest of the path.
@router.get(SLUG + "/checkout-key/{fingerprint:path}", operation_id="getCheckoutKey")
async def get_checkout_key(
    request: Request, caller: Caller, provider: str, organization: str, project: str, fingerprint: str
) -> Response:
    database, service = _parts(request)
    async with database.reading() as session:
        body = await service.get_checkout_key(session, caller, (provider, organization, project), fingerprint)
    return json_response(body)


@router.delete(SLUG + "/checkout-key/{fingerprint:path}", operation_id="deleteCheckoutKey")
async def delete_checkout_key(
    request: Request, caller: Caller, provider: str, organization: str, project: str, fingerprint: str
) -> Response:
    database, service = _parts(request)
    async with database.writing() as session:
        await service.delete_checkout_key(session, caller, (provider, organization, project), fingerprint)
    return message("Checkout key deleted.")
