"""Settings pages: a project's (environment variables, checkout keys, definitions and triggers, the
public badge) and an organization's (contexts, groups and members, runners). As every page: one unit
of work, the API's services, the session's ``Principal``; buttons shown only to roles that may."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response

from circlet.auth import ROLE_ADMIN, ROLE_MEMBER
from circlet.contexts.schemas import ContextOwner, CreateRestriction
from circlet.contexts.service import ContextService
from circlet.db.engine import Database
from circlet.definitions.service import DefinitionService
from circlet.groups.service import GroupService
from circlet.http.errors import BadRequest, NotFound
from circlet.http.routing import public_base_url
from circlet.orgs.service import find_org
from circlet.orgs.slugs import org_slug
from circlet.projects.schemas import AdvancedSettings
from circlet.projects.service import ProjectService
from circlet.runners import service as runner_classes
from circlet.runners.service import RunnerService
from circlet.web.pages import FormSession, Session, may, project_crumbs
from circlet.web.rendering import SECURITY_HEADERS, Crumb, PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def back_to(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


async def write_then_back(request: Request, back: str, work: Callable[[AsyncSession], Awaitable[object]]) -> Response:
    """A form's action: ``work`` (a service call) in one unit of work, committed, then back to the page."""
    database: Database = request.app.state.database
    async with database.writing() as session:
        await work(session)
    return back_to(back)


# -- a project's settings -------------------------------------------------------------------------


@router.get("/settings/project/{vcs}/{org}/{project}")
async def project_settings(request: Request, principal: Session, vcs: str, org: str, project: str) -> Response:
    database: Database = request.app.state.database
    projects: ProjectService = request.app.state.project_service
    definition_service: DefinitionService = request.app.state.definition_service
    slug = (vcs, org, project)
    async with database.reading() as session:
        found = await projects.find(session, principal, slug)
        env_vars = (await projects.list_env_vars(session, principal, slug))["items"]
        keys = (await projects.list_checkout_keys(session, principal, slug, "sha256"))["items"]
        advanced = (await projects.get_settings(session, principal, slug))["advanced"]
        definitions: list[dict[str, Any]] = []
        if may(principal, found.org.id, ROLE_MEMBER):  # the API lets members read definitions
            project_id = str(found.project.id)
            for definition in (await definition_service.list_definitions(session, principal, project_id))["items"]:
                triggers = await definition_service.list_triggers(
                    session, principal, project_id, definition["id"], public_base_url(request)
                )
                definitions.append({**definition, "triggers": triggers["items"]})
    return page(
        request,
        "project_settings.html",
        {
            "title": f"{found.project.name} settings",
            "crumbs": [*project_crumbs(vcs, org, project), Crumb("Settings")],
            "base": f"/settings/project/{vcs}/{org}/{project}",
            "badge": f"/badge/{vcs}/{org}/{project}.svg",
            "project_name": found.project.name,
            "env_vars": env_vars,
            "keys": keys,
            "advanced": advanced,
            "definitions": definitions,
            "is_admin": may(principal, found.org.id, ROLE_ADMIN),
        },
    )


@router.post("/settings/project/{vcs}/{org}/{project}/env-vars")
async def put_project_env_var(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    project: str,
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    """Add a variable, or replace the value of one of that name (the API's create does both)."""
    projects: ProjectService = request.app.state.project_service
    return await write_then_back(
        request,
        f"/settings/project/{vcs}/{org}/{project}#env-vars",
        lambda session: projects.create_env_var(session, browser.principal, (vcs, org, project), name.strip(), value),
    )


@router.post("/settings/project/{vcs}/{org}/{project}/env-vars/delete")
async def delete_project_env_var(
    request: Request, browser: FormSession, vcs: str, org: str, project: str, name: Annotated[str, Form()] = ""
) -> Response:
    projects: ProjectService = request.app.state.project_service
    return await write_then_back(
        request,
        f"/settings/project/{vcs}/{org}/{project}#env-vars",
        lambda session: projects.delete_env_var(session, browser.principal, (vcs, org, project), name),
    )


@router.post("/settings/project/{vcs}/{org}/{project}/checkout-keys")
async def add_checkout_key(request: Request, browser: FormSession, vcs: str, org: str, project: str) -> Response:
    """A deploy key (a user key needs a forge account, which circlet does not have)."""
    projects: ProjectService = request.app.state.project_service
    return await write_then_back(
        request,
        f"/settings/project/{vcs}/{org}/{project}#checkout-keys",
        lambda session: projects.create_checkout_key(session, browser.principal, (vcs, org, project), "deploy-key"),
    )


@router.post("/settings/project/{vcs}/{org}/{project}/checkout-keys/delete")
async def delete_checkout_key(
    request: Request, browser: FormSession, vcs: str, org: str, project: str, fingerprint: Annotated[str, Form()] = ""
) -> Response:
    projects: ProjectService = request.app.state.project_service
    return await write_then_back(
        request,
        f"/settings/project/{vcs}/{org}/{project}#checkout-keys",
        lambda session: projects.delete_checkout_key(session, browser.principal, (vcs, org, project), fingerprint),
    )


@router.post("/settings/project/{vcs}/{org}/{project}/badge")
async def set_public_badge(
    request: Request, browser: FormSession, vcs: str, org: str, project: str, public: Annotated[str, Form()] = ""
) -> Response:
    """The badge is public for an open-source project (the ``oss`` setting), as on CircleCI."""
    projects: ProjectService = request.app.state.project_service
    return await write_then_back(
        request,
        f"/settings/project/{vcs}/{org}/{project}#badge",
        lambda session: projects.patch_settings(
            session, browser.principal, (vcs, org, project), AdvancedSettings(oss=public == "true")
        ),
    )


# -- an organization's settings -------------------------------------------------------------------


def org_crumbs(vcs: str, org: str, here: str) -> list[Crumb]:
    return [Crumb("Dashboard", "/"), Crumb(org, f"/settings/organization/{vcs}/{org}/contexts"), Crumb(here)]


def org_tabs(vcs: str, org: str) -> list[tuple[str, str]]:
    base = f"/settings/organization/{vcs}/{org}"
    return [("Contexts", f"{base}/contexts"), ("Groups", f"{base}/groups"), ("Runners", f"{base}/runners")]


@router.get("/settings/organization/{vcs}/{org}/contexts")
async def contexts_page(request: Request, principal: Session, vcs: str, org: str) -> Response:
    database: Database = request.app.state.database
    contexts: ContextService = request.app.state.context_service
    async with database.reading() as session:
        organization = await find_org(session, principal, f"{vcs}/{org}")
        listed = await contexts.list_contexts(
            session,
            principal,
            owner_id=organization.id,
            owner_slug=None,
            page_token=request.query_params.get("page-token") or None,
        )
    base = f"/settings/organization/{vcs}/{org}"
    return page(
        request,
        "contexts.html",
        {
            "title": f"{organization.name} contexts",
            "crumbs": org_crumbs(vcs, org, "Contexts"),
            "tabs": org_tabs(vcs, org),
            "org_name": organization.name,
            "base": base,
            "contexts": listed["items"],
            "next_href": f"{base}/contexts?page-token={quote(listed['next_page_token'])}"
            if listed["next_page_token"]
            else None,
            "is_admin": may(principal, organization.id, ROLE_ADMIN),
        },
    )


@router.post("/settings/organization/{vcs}/{org}/contexts")
async def create_context(
    request: Request, browser: FormSession, vcs: str, org: str, name: Annotated[str, Form()] = ""
) -> Response:
    database: Database = request.app.state.database
    contexts: ContextService = request.app.state.context_service
    async with database.writing() as session:
        organization = await find_org(session, browser.principal, f"{vcs}/{org}")
        created = await contexts.create_context(
            session, browser.principal, name.strip(), ContextOwner(id=organization.id, slug=None, type="organization")
        )
    return back_to(f"/settings/organization/{vcs}/{org}/contexts/{created['id']}")


async def context_in_org(
    request: Request, session: Any, principal: Any, vcs: str, org: str, context_id: uuid.UUID
) -> tuple[Any, Any]:
    """The context, only under its own organization's URL (another organization's path is a 404)."""
    contexts: ContextService = request.app.state.context_service
    organization = await find_org(session, principal, f"{vcs}/{org}")
    context = await contexts.get_context(session, principal, context_id)
    if context.org_id != organization.id:
        raise NotFound("Context not found.")
    return organization, context


@router.get("/settings/organization/{vcs}/{org}/contexts/{context_id}")
async def context_page(request: Request, principal: Session, vcs: str, org: str, context_id: uuid.UUID) -> Response:
    database: Database = request.app.state.database
    contexts: ContextService = request.app.state.context_service
    async with database.reading() as session:
        organization, context = await context_in_org(request, session, principal, vcs, org, context_id)
        variables = (await contexts.list_env_vars(session, principal, context_id, None))["items"]
        restrictions = (await contexts.list_restrictions(session, principal, context_id, None))["items"]
    base = f"/settings/organization/{vcs}/{org}/contexts/{context_id}"
    return page(
        request,
        "context.html",
        {
            "title": f"Context {context.name}",
            "crumbs": [
                Crumb("Dashboard", "/"),
                Crumb(org, f"/settings/organization/{vcs}/{org}/contexts"),
                Crumb("Contexts", f"/settings/organization/{vcs}/{org}/contexts"),
                Crumb(context.name),
            ],
            "context": context,
            "base": base,
            "variables": variables,
            "restrictions": restrictions,
            "is_admin": may(principal, organization.id, ROLE_ADMIN),
        },
    )


@router.post("/settings/organization/{vcs}/{org}/contexts/{context_id}/env-vars")
async def put_context_env_var(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    context_id: uuid.UUID,
    name: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    contexts: ContextService = request.app.state.context_service

    async def work(session: AsyncSession) -> None:
        await context_in_org(request, session, browser.principal, vcs, org, context_id)
        await contexts.put_env_var(session, browser.principal, context_id, name.strip(), value)

    return await write_then_back(request, f"/settings/organization/{vcs}/{org}/contexts/{context_id}#variables", work)


@router.post("/settings/organization/{vcs}/{org}/contexts/{context_id}/env-vars/delete")
async def delete_context_env_var(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    context_id: uuid.UUID,
    name: Annotated[str, Form()] = "",
) -> Response:
    contexts: ContextService = request.app.state.context_service

    async def work(session: AsyncSession) -> None:
        await context_in_org(request, session, browser.principal, vcs, org, context_id)
        await contexts.delete_env_var(session, browser.principal, context_id, name)

    return await write_then_back(request, f"/settings/organization/{vcs}/{org}/contexts/{context_id}#variables", work)


@router.post("/settings/organization/{vcs}/{org}/contexts/{context_id}/restrictions")
async def add_restriction(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    context_id: uuid.UUID,
    restriction_type: Annotated[str, Form()] = "",
    restriction_value: Annotated[str, Form()] = "",
) -> Response:
    database: Database = request.app.state.database
    contexts: ContextService = request.app.state.context_service
    try:
        body = CreateRestriction.model_validate(
            {"restriction_type": restriction_type, "restriction_value": restriction_value}
        )
    except ValidationError:
        raise BadRequest("restriction_type: one of project, expression, group.") from None
    async with database.writing() as session:
        await context_in_org(request, session, browser.principal, vcs, org, context_id)
        await contexts.create_restriction(session, browser.principal, context_id, body)
    return back_to(f"/settings/organization/{vcs}/{org}/contexts/{context_id}#restrictions")


@router.post("/settings/organization/{vcs}/{org}/contexts/{context_id}/restrictions/delete")
async def delete_restriction(
    request: Request,
    browser: FormSession,
    vcs: str,
    org: str,
    context_id: uuid.UUID,
    restriction_id: Annotated[uuid.UUID, Form()],
) -> Response:
    contexts: ContextService = request.app.state.context_service

    async def work(session: AsyncSession) -> None:
        await context_in_org(request, session, browser.principal, vcs, org, context_id)
        await contexts.delete_restriction(session, browser.principal, context_id, restriction_id)

    return await write_then_back(
        request, f"/settings/organization/{vcs}/{org}/contexts/{context_id}#restrictions", work
    )


@router.get("/settings/organization/{vcs}/{org}/groups")
async def groups_page(request: Request, principal: Session, vcs: str, org: str) -> Response:
    database: Database = request.app.state.database
    groups: GroupService = request.app.state.group_service
    async with database.reading() as session:
        organization = await find_org(session, principal, f"{vcs}/{org}")
        listed = await groups.list_groups(session, principal, str(organization.id), 100, None)
        members = await groups.members(session, principal, str(organization.id), [g["id"] for g in listed["items"]])
    return page(
        request,
        "groups.html",
        {
            "title": f"{organization.name} groups",
            "crumbs": org_crumbs(vcs, org, "Groups"),
            "tabs": org_tabs(vcs, org),
            "org_name": organization.name,
            "groups": [{**group, "members": members.get(group["id"], [])} for group in listed["items"]],
            "total": listed["total_count"],
        },
    )


@router.get("/settings/organization/{vcs}/{org}/runners")
async def runners_page(request: Request, principal: Session, vcs: str, org: str) -> Response:
    database: Database = request.app.state.database
    runner_service: RunnerService = request.app.state.runner_service
    async with database.reading() as session:
        organization = await find_org(session, principal, f"{vcs}/{org}")
        classes = (await runner_classes.list_classes(session, principal, None, organization.id))["items"]
        agents = (await runner_classes.list_instances(session, principal, None, None, organization.id))["items"]
        for row in classes:  # a queue's depth is the runner API's count of its tasks
            row["queued"] = await runner_service.depth(session, row["resource_class"], "queued")
            row["running"] = await runner_service.depth(session, row["resource_class"], "running")
    return page(
        request,
        "runners.html",
        {
            "title": f"{organization.name} runners",
            "crumbs": org_crumbs(vcs, org, "Runners"),
            "tabs": org_tabs(vcs, org),
            "org_name": organization.name,
            "org_slug": org_slug(organization.vcs_type, organization.name, organization.id),
            "classes": classes,
            "agents": agents,
        },
    )
