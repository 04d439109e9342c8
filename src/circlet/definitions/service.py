"""Pipeline definitions (what a project builds: a config file of its repository) and their triggers
(what starts a pipeline of a definition).

Every project has a definition: until a write touches the project's definitions it exists only in
a derived form (`default_definition`), so reads never need to write it.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_ADMIN, ROLE_MEMBER, Principal, require_role
from circlet.db.models import PipelineDefinition, PipelineTrigger, Project, TriggerWebhookSecret
from circlet.db.types import utcnow
from circlet.definitions import repository as definitions
from circlet.definitions.schemas import DefinitionBody, TriggerBody
from circlet.http.errors import BadRequest, NotFound
from circlet.http.responses import timestamp
from circlet.orgs import repository as orgs
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.secrets import Keyring, SealedValue

DEFAULT_CONFIG_PATH = ".circleci/config.yml"
DEFAULT_DEFINITION_NAME = "default"
DEFAULT_PRESET = "all-pushes"
WEBHOOK = "webhook"
# A custom webhook trigger's URL, under the server's public URL (docs/compatibility.md).
CUSTOM_WEBHOOK_PATH = "/hooks/custom/{trigger_id}"


def webhook_secret_context(trigger_id: uuid.UUID) -> str:
    """Associated data binding a sealed webhook secret to its trigger."""
    return f"trigger-webhook:{trigger_id}"


def webhook_url(base_url: str, trigger_id: uuid.UUID, secret: str) -> str:
    return base_url + CUSTOM_WEBHOOK_PATH.format(trigger_id=trigger_id) + f"?secret={secret}"


def definition_body(definition: PipelineDefinition, project: Project) -> dict[str, Any]:
    config_repo = definition.config_repo_url or project.vcs_url
    checkout_repo = definition.checkout_repo_url or project.vcs_url
    return {
        "id": definition.id,
        "name": definition.name,
        "description": definition.description,
        "created_at": timestamp(definition.created_at),
        "config_source": {
            "provider": "circleci",
            "repo": {"full_name": config_repo, "external_id": str(project.id)},
            "file_path": definition.config_file_path,
        },
        "checkout_source": {
            "provider": "circleci",
            "repo": {"full_name": checkout_repo, "external_id": str(project.id)},
        },
    }


def trigger_body(trigger: PipelineTrigger, url: str | None = None) -> dict[str, Any]:
    event_source = dict(trigger.event_source)
    if url is not None:
        event_source["webhook"] = {**event_source.get("webhook", {}), "url": url}
    body: dict[str, Any] = {
        "id": trigger.id,
        "created_at": timestamp(trigger.created_at),
        "event_source": event_source,
        "checkout_ref": trigger.checkout_ref,
        "config_ref": trigger.config_ref,
        "disabled": trigger.disabled,
    }
    if trigger.event_name:
        body["event_name"] = trigger.event_name
    if trigger.event_preset:
        body["event_preset"] = trigger.event_preset
    return body


def check_file_path(path: str) -> None:
    if len(path) > 1024 or path.startswith(("/", "-")) or ".." in path.split("/") or not path.isprintable():
        raise BadRequest("config_source.file_path: a relative path inside the repository.")


async def default_definition(session: AsyncSession, project: Project) -> PipelineDefinition:
    """The project's first definition, or, while it has none stored, `.circleci/config.yml` from the
    project's repository with an id derived from the project's."""
    existing = await definitions.definitions_of(session, project.id)
    return existing[0] if existing else derived_default_definition(project)


def derived_default_definition(project: Project) -> PipelineDefinition:
    return PipelineDefinition(
        id=uuid.uuid5(project.id, DEFAULT_DEFINITION_NAME),
        project_id=project.id,
        name=DEFAULT_DEFINITION_NAME,
        description="",
        config_file_path=DEFAULT_CONFIG_PATH,
        config_repo_url="",
        checkout_repo_url="",
        created_at=project.created_at,
    )


def default_trigger(definition: PipelineDefinition, project: Project) -> PipelineTrigger:
    """The trigger CircleCI gives a new project's first pipeline: every push, from the project's
    repository (a forge's webhook, or polling)."""
    return PipelineTrigger(
        id=uuid.uuid5(definition.id, DEFAULT_PRESET),
        project_id=project.id,
        definition_id=definition.id,
        event_name="",
        event_source={"provider": "github_app", "repo": {"external_id": str(project.id), "full_name": project.vcs_url}},
        event_preset=DEFAULT_PRESET,
        checkout_ref="",
        config_ref="",
        disabled=False,
        created_at=project.created_at,
    )


async def stored_default(session: AsyncSession, project: Project) -> None:
    """Write the default definition (and its trigger) down before the project's definitions change."""
    definition = await default_definition(session, project)
    if await definitions.get_definition(session, project.id, definition.id) is None and not (
        await definitions.definitions_of(session, project.id)
    ):
        await definitions.add(session, definition)
        await definitions.add(session, default_trigger(definition, project))


async def triggers_of(session: AsyncSession, project: Project, definition: PipelineDefinition) -> list[PipelineTrigger]:
    """A definition's triggers; the default definition, while only derived, has the default trigger."""
    if await definitions.get_definition(session, project.id, definition.id) is None:
        return [default_trigger(definition, project)]
    return await definitions.triggers_of(session, definition.id)


async def project_triggers(session: AsyncSession, project: Project) -> list[tuple[PipelineDefinition, PipelineTrigger]]:
    """Every trigger of the project, with its definition (the derived default ones included)."""
    stored = await definitions.definitions_of(session, project.id)
    if not stored:
        default = derived_default_definition(project)
        return [(default, default_trigger(default, project))]
    return [
        (definition, trigger)
        for definition in stored
        for trigger in await definitions.triggers_of(session, definition.id)
    ]


async def find_definition(
    session: AsyncSession, found: ProjectInOrg, definition_id: uuid.UUID, *, write: bool = False
) -> PipelineDefinition:
    """A definition of the project (the derived default included); 404 if it has no such one."""
    if write:
        await stored_default(session, found.project)
    definition = await definitions.get_definition(session, found.project.id, definition_id)
    if definition is None:
        default = await default_definition(session, found.project)
        definition = default if default.id == definition_id else None
    if definition is None:
        raise NotFound("Pipeline definition not found.")
    return definition


async def project_in_org(session: AsyncSession, project_id: uuid.UUID) -> ProjectInOrg | None:
    project = await projects.get_project(session, project_id)
    org = await orgs.get_org(session, project.org_id) if project else None
    return ProjectInOrg(project, org) if project and org else None


@dataclass
class DefinitionService:
    keyring: Keyring

    def _url(self, secret: TriggerWebhookSecret | None, base_url: str) -> str | None:
        if secret is None:
            return None
        opened = self.keyring.open(
            SealedValue(secret.key_id, secret.ciphertext), webhook_secret_context(secret.trigger_id)
        )
        return webhook_url(base_url, secret.trigger_id, opened)

    async def _body(self, session: AsyncSession, trigger: PipelineTrigger, base_url: str) -> dict[str, Any]:
        secret = await definitions.get_webhook_secret(session, trigger.id)
        return trigger_body(trigger, self._url(secret, base_url))

    async def _project_by_id(
        self, session: AsyncSession, principal: Principal, project_id: str, least: str, action: str
    ) -> ProjectInOrg:
        try:
            parsed = uuid.UUID(project_id)
        except ValueError:
            raise BadRequest("project_id: not a UUID.") from None
        found = await project_in_org(session, parsed)
        if found is None:
            raise NotFound("Project not found.")
        require_role(principal, found.org.id, least, missing="Project not found.", action=action)
        return found

    # -- pipeline definitions ---------------------------------------------------------------------

    async def list_definitions(self, session: AsyncSession, principal: Principal, project_id: str) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read pipeline definitions")
        rows = await definitions.definitions_of(session, found.project.id)
        rows = rows or [await default_definition(session, found.project)]
        return {"items": [definition_body(d, found.project) for d in rows]}

    async def create_definition(
        self, session: AsyncSession, principal: Principal, project_id: str, body: DefinitionBody
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "create pipeline definitions")
        await stored_default(session, found.project)
        if not body.name or not body.name.strip() or len(body.name) > 255:
            raise BadRequest("name: 1 to 255 characters.")
        file_path = body.config_source.file_path if body.config_source and body.config_source.file_path else None
        if not file_path:
            raise BadRequest("config_source.file_path: required.")
        check_file_path(file_path)
        definition = PipelineDefinition(
            id=uuid.uuid4(),
            project_id=found.project.id,
            name=body.name,
            description=body.description or "",
            config_file_path=file_path,
            created_at=utcnow(),
        )
        await definitions.add(session, definition)
        return definition_body(definition, found.project)

    async def get_definition(
        self, session: AsyncSession, principal: Principal, project_id: str, definition_id: uuid.UUID
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read pipeline definitions")
        definition = await find_definition(session, found, definition_id)
        return definition_body(definition, found.project)

    async def update_definition(
        self,
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        definition_id: uuid.UUID,
        body: DefinitionBody,
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "change pipeline definitions")
        definition = await find_definition(session, found, definition_id, write=True)
        if body.name is not None:
            if not body.name.strip() or len(body.name) > 255:
                raise BadRequest("name: 1 to 255 characters.")
            definition.name = body.name
        if body.description is not None:
            definition.description = body.description
        if body.config_source is not None and body.config_source.file_path is not None:
            check_file_path(body.config_source.file_path)
            definition.config_file_path = body.config_source.file_path
        await session.flush()
        return definition_body(definition, found.project)

    async def delete_definition(
        self, session: AsyncSession, principal: Principal, project_id: str, definition_id: uuid.UUID
    ) -> None:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "delete pipeline definitions")
        definition = await find_definition(session, found, definition_id, write=True)
        await definitions.delete_definition(session, definition.id)

    # -- triggers ---------------------------------------------------------------------------------

    async def list_triggers(
        self, session: AsyncSession, principal: Principal, project_id: str, definition_id: uuid.UUID, base_url: str
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read triggers")
        definition = await find_definition(session, found, definition_id)
        rows = await triggers_of(session, found.project, definition)
        return {"items": [await self._body(session, trigger, base_url) for trigger in rows]}

    async def create_trigger(
        self,
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        definition_id: uuid.UUID,
        body: TriggerBody,
        base_url: str,
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "create triggers")
        definition = await find_definition(session, found, definition_id, write=True)
        if body.event_source is None or body.event_source.provider is None:
            raise BadRequest("event_source.provider: required.")
        trigger = PipelineTrigger(
            id=uuid.uuid4(),
            project_id=found.project.id,
            definition_id=definition.id,
            event_name=body.event_name or "",
            event_source=body.event_source.model_dump(exclude_none=True),
            event_preset=body.event_preset or "",
            checkout_ref=body.checkout_ref or "",
            config_ref=body.config_ref or "",
            disabled=bool(body.disabled),
            created_at=utcnow(),
        )
        await definitions.add(session, trigger)
        url = None
        if trigger.event_source.get("provider") == WEBHOOK:
            # The URL's secret is the webhook's credential: unguessable, sealed at rest.
            secret = secrets.token_urlsafe(32)
            sealed = self.keyring.seal(secret, webhook_secret_context(trigger.id))
            await definitions.add_webhook_secret(session, trigger.id, sealed.key_id, sealed.ciphertext)
            url = webhook_url(base_url, trigger.id, secret)
        return trigger_body(trigger, url)

    async def get_trigger(
        self, session: AsyncSession, principal: Principal, project_id: str, trigger_id: uuid.UUID, base_url: str
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read triggers")
        return await self._body(session, await self._trigger(session, found, trigger_id), base_url)

    async def update_trigger(
        self,
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        trigger_id: uuid.UUID,
        body: TriggerBody,
        base_url: str,
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "change triggers")
        await stored_default(session, found.project)
        trigger = await self._trigger(session, found, trigger_id)
        for name in ("event_name", "event_preset", "checkout_ref", "config_ref", "disabled"):
            value = getattr(body, name)
            if value is not None:
                setattr(trigger, name, value)
        if body.event_source is not None and body.event_source.webhook is not None:
            trigger.event_source = {**trigger.event_source, "webhook": body.event_source.webhook.model_dump()}
        await session.flush()
        return await self._body(session, trigger, base_url)

    async def delete_trigger(
        self, session: AsyncSession, principal: Principal, project_id: str, trigger_id: uuid.UUID
    ) -> None:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "delete triggers")
        await stored_default(session, found.project)
        trigger = await self._trigger(session, found, trigger_id)
        await definitions.delete_trigger(session, trigger.id)

    async def _trigger(self, session: AsyncSession, found: ProjectInOrg, trigger_id: uuid.UUID) -> PipelineTrigger:
        trigger = await definitions.get_trigger(session, found.project.id, trigger_id)
        if trigger is None:  # the derived default trigger, while its definition is only derived
            default = default_trigger(await default_definition(session, found.project), found.project)
            stored = await definitions.get_definition(session, found.project.id, default.definition_id)
            trigger = default if default.id == trigger_id and stored is None else None
        if trigger is None:
            raise NotFound("Trigger not found.")
        return trigger
