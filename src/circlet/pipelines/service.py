"""Triggering pipelines and reading them: the Pipeline tag, pipeline definitions and triggers.

Triggering does the git work the answer depends on (fetch the mirror, resolve the ref: an unknown
ref is a 400) outside any transaction, records the pipeline as `pending` in one short unit of
work, and leaves reading and compiling the config to the engine, in the background.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_ADMIN, ROLE_MEMBER, Principal, require_role
from circlet.config import ConfigInvalid
from circlet.db.models import Organization, Pipeline, PipelineDefinition, PipelineTrigger, Project, Workflow
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.compiling import Compiled, CompileRefused
from circlet.engine.loops import EngineLoops, config_errors, config_warnings, error_lines, set_pipeline_state
from circlet.engine.orchestrator import Orchestrator, key_hash
from circlet.http.errors import BadRequest, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.http.text import is_storable_text
from circlet.mirrors.git_mirror import Commit, GitError, GitMirrors, RepoSource, UnknownRef
from circlet.orgs import repository as orgs
from circlet.orgs.service import find_org
from circlet.orgs.slugs import PROVIDER_NAMES, project_slug
from circlet.pipelines import repository as definitions
from circlet.pipelines.schemas import DefinitionBody, RunPipeline, TriggerBody, TriggerPipeline
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.projects.service import ProjectService
from circlet.users import repository as users
from circlet.users.avatars import SYSTEM_AVATAR_KEY, avatar_url

PAGE_SIZE = 20
DEFAULT_CONFIG_PATH = ".circleci/config.yml"
DEFAULT_DEFINITION_NAME = "default"
MAX_PARAMETERS = 100
MISSING_PIPELINE = "Pipeline not found."
PROJECT_TYPES = {"github": "github", "bitbucket": "bitbucket", "circleci": "circleci"}


@dataclass(frozen=True)
class TriggerRequest:
    """A trigger checked against the project, before the git work."""

    found: ProjectInOrg
    url: str
    branch: str | None
    tag: str | None
    config_branch: str | None
    config_tag: str | None
    parameters: dict[str, Any]
    definition_id: uuid.UUID | None
    file_path: str
    inline_config: str | None


@dataclass(frozen=True)
class Resolved:
    commit: Commit
    config_revision: str


def slug_of(project: Project, org: Organization) -> str:
    return project_slug(org.vcs_type, org.name, org.id, project.name, project.id)


def check_parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    parameters = parameters or {}
    if len(parameters) > MAX_PARAMETERS:
        raise BadRequest(f"parameters: at most {MAX_PARAMETERS} pipeline parameters.")
    for name, value in parameters.items():
        if not is_storable_text(name):
            raise BadRequest("parameters: a parameter name must be text without NUL characters.")
        if not isinstance(value, str | int | float | bool) or (
            isinstance(value, str) and (len(value) > 512 or not is_storable_text(value))
        ):
            raise BadRequest(f"parameters.{name}: a string (at most 512 characters), number or boolean.")
    return parameters


def one_ref(branch: str | None, tag: str | None, what: str) -> None:
    if branch is not None and tag is not None:
        raise BadRequest(f"{what}branch and {what}tag are mutually exclusive.")
    for value in (branch, tag):
        if value is not None and (not value or len(value) > 255 or any(c.isspace() for c in value)):
            raise BadRequest(f"{what}branch/tag: 1 to 255 characters, without spaces.")


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


def trigger_body(trigger: PipelineTrigger) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": trigger.id,
        "created_at": timestamp(trigger.created_at),
        "event_source": trigger.event_source,
        "checkout_ref": trigger.checkout_ref,
        "config_ref": trigger.config_ref,
        "disabled": trigger.disabled,
    }
    if trigger.event_name:
        body["event_name"] = trigger.event_name
    if trigger.event_preset:
        body["event_preset"] = trigger.event_preset
    return body


@dataclass
class PipelineService:
    mirrors: GitMirrors
    engine_loops: EngineLoops
    orchestrator: Orchestrator
    project_service: ProjectService
    page_tokens: PageTokens

    # -- triggering -------------------------------------------------------------------------------

    async def prepare_trigger(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], body: TriggerPipeline
    ) -> TriggerRequest:
        found = await self.project_service.find(session, principal, slug, ROLE_MEMBER, "trigger pipelines")
        one_ref(body.branch, body.tag, "")
        definition = await self.default_definition(session, found.project)
        branch = body.branch if body.branch is not None or body.tag is not None else found.project.default_branch
        return TriggerRequest(
            found,
            found.project.vcs_url,
            branch,
            body.tag,
            branch,
            body.tag,
            check_parameters(body.parameters),
            definition.id,
            definition.config_file_path,
            None,
        )

    async def prepare_run(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], body: RunPipeline
    ) -> TriggerRequest:
        """``pipeline/run``: a definition (or the default), config and checkout refs, or an inline config."""
        found = await self.project_service.find(session, principal, slug, ROLE_MEMBER, "trigger pipelines")
        config = body.config
        checkout = body.checkout
        one_ref(config.branch if config else None, config.tag if config else None, "config.")
        one_ref(checkout.branch if checkout else None, checkout.tag if checkout else None, "checkout.")
        if body.definition_id is not None:
            try:
                definition_id = uuid.UUID(body.definition_id)
            except ValueError:
                raise BadRequest("definition_id: not a UUID.") from None
            definition = await self._definition(session, found, definition_id)
        else:
            definition = await self.default_definition(session, found.project)
        default = found.project.default_branch
        config_branch = config.branch if config else None
        config_tag = config.tag if config else None
        branch = checkout.branch if checkout else None
        tag = checkout.tag if checkout else None
        if branch is None and tag is None:
            branch, tag = config_branch, config_tag
        if branch is None and tag is None:
            branch = default
        if config_branch is None and config_tag is None:
            config_branch, config_tag = branch, tag
        # The MCP server sends `content: ""` when the user gives no inline config: an empty
        # content means the definition's config source, as an absent one does.
        inline = config.content if config and config.content and config.content.strip() else None
        return TriggerRequest(
            found,
            definition.checkout_repo_url or found.project.vcs_url,
            branch,
            tag,
            config_branch,
            config_tag,
            check_parameters(body.parameters),
            definition.id,
            definition.config_file_path,
            inline,
        )

    async def resolve(self, request: TriggerRequest) -> Resolved:
        """Fetch the mirror and resolve the refs; a ref the repository lacks is a 400."""
        if not request.url:
            raise BadRequest("The project has no repository to build (set its vcs_url).")
        try:
            project = request.found.project
            path = await self.mirrors.fetch(RepoSource(project.id, request.url, project.repo_set_by_operator))
            commit = await self.mirrors.resolve(path, branch=request.branch, tag=request.tag)
            config_revision = commit.sha
            if (request.config_branch, request.config_tag) != (request.branch, request.tag):
                config_commit = await self.mirrors.resolve(path, branch=request.config_branch, tag=request.config_tag)
                config_revision = config_commit.sha
        except UnknownRef as exc:
            raise BadRequest(f"{exc}.") from None
        except GitError as exc:
            raise BadRequest(str(exc)) from None
        return Resolved(commit, config_revision)

    async def create_pipeline(
        self,
        session: AsyncSession,
        principal: Principal,
        request: TriggerRequest,
        resolved: Resolved,
        extra_values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``extra_values``: pipeline values of the trigger's kind (a rollback's ``deploy.*``)."""
        project, org = request.found.project, request.found.org
        number = (await engine.next_numbers(session, project.id, pipelines=1))[0]
        now = utcnow()
        pipeline_id = uuid.uuid4()
        slug = slug_of(project, org)
        values: dict[str, Any] = {
            "id": str(pipeline_id),
            "number": number,
            "project.git_url": request.url,
            "project.type": PROJECT_TYPES.get(org.vcs_type, org.vcs_type),
            "project.slug": slug,
            "git.branch": request.branch,
            "git.tag": request.tag,
            "git.revision": resolved.commit.sha,
            "git.branch.is_default": request.branch == project.default_branch if request.branch else None,
            "git.repo_url": request.url,
            "git.repo_name": project.name,
            "git.repo_owner": org.name,
            "git.commit.subject": resolved.commit.subject,
            "git.commit.body": resolved.commit.body,
            "trigger_source": "api",
            "trigger.type": "api",
            "trigger.received_at": timestamp(now),
            "event.name": "api",
            "trigger_parameters.circleci.trigger_type": "api",
            "trigger_parameters.circleci.actor_id": str(principal.user_id),
            "config.file_path": request.file_path,
            "definition.id": str(request.definition_id) if request.definition_id else None,
            **(extra_values or {}),
        }
        pipeline = Pipeline(
            id=pipeline_id,
            project_id=project.id,
            number=number,
            state=states.PIPELINE_PENDING,
            errors=[],
            trigger_type="api",
            actor_id=principal.user_id,
            parameters=request.parameters,
            definition_id=request.definition_id,
            vcs_url=request.url,
            branch=request.branch,
            tag=request.tag,
            revision=resolved.commit.sha,
            config_revision=resolved.config_revision,
            commit_subject=resolved.commit.subject,
            commit_body=resolved.commit.body,
            config_file_path=request.file_path,
            inline_config=request.inline_config,
            values={name: value for name, value in values.items() if value is not None},
            created_at=now,
            updated_at=now,
        )
        await engine.add(session, pipeline)
        return {"id": pipeline.id, "state": pipeline.state, "number": number, "created_at": timestamp(now)}

    def start(self, pipeline_id: uuid.UUID) -> None:
        """After the trigger's commit: compile and create the workflows in the background."""
        self.engine_loops.submit(pipeline_id)

    async def continuation_target(self, session: AsyncSession, key: str) -> tuple[Pipeline, uuid.UUID]:
        """The pipeline a continuation key may continue (once, while its setup job runs), and its org."""
        pipeline = await engine.find_pipeline_by_continuation(session, key_hash(key))
        if pipeline is None or pipeline.state != states.PIPELINE_SETUP:
            raise BadRequest("Invalid continuation key: unknown, already used, or its pipeline is not in setup.")
        setup_jobs = [
            job
            for workflow in await engine.workflows_of(session, pipeline.id)
            if workflow.tag == "setup"
            for job in await engine.jobs_of(session, workflow.id)
        ]
        if not any(job.status == states.RUNNING for job in setup_jobs):
            raise BadRequest("The setup job of this pipeline is not running: a continuation is no longer possible.")
        project = await projects.get_project(session, pipeline.project_id)
        assert project is not None
        return pipeline, project.org_id

    async def compile_continuation(
        self, target: tuple[Pipeline, uuid.UUID], configuration: str, parameters: dict[str, Any] | None
    ) -> Compiled:
        """Between the read and the write: a compile holds no transaction while it runs."""
        pipeline, org_id = target
        try:
            compiled = await self.engine_loops.compile(org_id, pipeline, configuration, check_parameters(parameters))
        except CompileRefused as exc:
            raise BadRequest(f"The continuation config is invalid: {error_lines(exc.errors)}") from None
        if compiled.config.setup:
            raise BadRequest("A continuation config cannot itself be a setup config.")
        return compiled

    async def continue_pipeline(self, session: AsyncSession, key: str, configuration: str, compiled: Compiled) -> None:
        pipeline, org_id = await self.continuation_target(session, key)
        pipeline.source, pipeline.compiled = configuration, compiled.rendered
        pipeline.errors = [*pipeline.errors, *config_warnings(compiled.config)]
        pipeline.continuation_key_hash = None
        set_pipeline_state(pipeline, states.PIPELINE_CREATED)
        try:
            await self.orchestrator.create_workflows(session, pipeline, compiled.config, org_id)
        except ConfigInvalid as exc:
            raise BadRequest(f"The continuation config is invalid: {config_errors(exc)}") from None

    # -- reading ----------------------------------------------------------------------------------

    async def visible_pipeline(
        self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID
    ) -> tuple[Pipeline, ProjectInOrg]:
        pipeline = await engine.get_pipeline(session, pipeline_id)
        found = await self._project(session, pipeline.project_id) if pipeline else None
        if pipeline is None or found is None or principal.role_in(found.org.id) is None:
            raise NotFound(MISSING_PIPELINE)
        return pipeline, found

    async def get(
        self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID, base_url: str
    ) -> dict[str, Any]:
        pipeline, found = await self.visible_pipeline(session, principal, pipeline_id)
        return await self._body(session, pipeline, found, {}, base_url)

    async def get_by_number(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int, base_url: str
    ) -> dict[str, Any]:
        found = await self.project_service.find(session, principal, slug)
        pipeline = await engine.get_pipeline_by_number(session, found.project.id, number)
        if pipeline is None:
            raise NotFound(MISSING_PIPELINE)
        return await self._body(session, pipeline, found, {}, base_url)

    async def config(self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID) -> dict[str, Any]:
        pipeline, _ = await self.visible_pipeline(session, principal, pipeline_id)
        body = {"source": pipeline.source, "compiled": pipeline.compiled}
        if pipeline.setup_source:
            body["setup-config"] = pipeline.setup_source
            body["compiled-setup-config"] = pipeline.compiled_setup
        return body

    async def values(self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID) -> dict[str, Any]:
        pipeline, _ = await self.visible_pipeline(session, principal, pipeline_id)
        return {f"pipeline.{name}": value for name, value in pipeline.values.items()}

    async def workflows(
        self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID, page_token: str | None
    ) -> dict[str, Any]:
        pipeline, found = await self.visible_pipeline(session, principal, pipeline_id)
        if page_token:
            self.page_tokens.decode(page_token, f"workflows:{pipeline_id}")
        rows = await engine.workflows_of(session, pipeline.id)
        slug = slug_of(found.project, found.org)
        return {"items": [workflow_body(w, pipeline, slug) for w in rows], "next_page_token": None}

    async def list_for_project(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        *,
        branch: str | None,
        mine: bool,
        page_token: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        found = await self.project_service.find(session, principal, slug)
        scope = f"pipelines:{found.project.id}:{branch}:{mine}"
        return await self._page(session, principal, [found.project.id], scope, branch, mine, page_token, base_url)

    async def list_for_org(
        self,
        session: AsyncSession,
        principal: Principal,
        org_slug: str | None,
        mine: bool,
        page_token: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        if org_slug is not None:
            org_ids = [(await find_org(session, principal, org_slug)).id]
        else:
            org_ids = sorted(principal.roles)
        project_ids = await definitions.project_ids_of_orgs(session, org_ids)
        scope = f"pipelines:{','.join(map(str, org_ids))}:{mine}"
        return await self._page(session, principal, project_ids, scope, None, mine, page_token, base_url)

    async def _page(
        self,
        session: AsyncSession,
        principal: Principal,
        project_ids: list[uuid.UUID],
        scope: str,
        branch: str | None,
        mine: bool,
        page_token: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        before = None
        if page_token:
            position = self.page_tokens.decode(page_token, scope)
            try:
                before = (datetime.fromisoformat(position[0]), uuid.UUID(position[1]))
            except (ValueError, TypeError, IndexError):
                raise BadRequest("page-token is invalid.") from None
        rows = await engine.list_pipelines(
            session,
            project_ids,
            branch=branch,
            actor_id=principal.user_id if mine else None,
            before=before,
            limit=PAGE_SIZE + 1,
        )
        cache: dict[Any, Any] = {}
        items = []
        for pipeline in rows[:PAGE_SIZE]:
            found = await self._project(session, pipeline.project_id)
            assert found is not None
            items.append(await self._body(session, pipeline, found, cache, base_url))
        next_token = None
        if len(rows) > PAGE_SIZE:
            last = rows[PAGE_SIZE - 1]
            next_token = self.page_tokens.encode(scope, [last.created_at.isoformat(), str(last.id)])
        return {"items": items, "next_page_token": next_token}

    async def _project(self, session: AsyncSession, project_id: uuid.UUID) -> ProjectInOrg | None:
        project = await projects.get_project(session, project_id)
        org = await orgs.get_org(session, project.org_id) if project else None
        return ProjectInOrg(project, org) if project and org else None

    async def _body(
        self, session: AsyncSession, pipeline: Pipeline, found: ProjectInOrg, cache: dict[Any, Any], base_url: str
    ) -> dict[str, Any]:
        actor = {"login": "circlet", "avatar_url": avatar_url(base_url, SYSTEM_AVATAR_KEY)}
        if pipeline.actor_id is not None:
            if pipeline.actor_id not in cache:
                cache[pipeline.actor_id] = await users.get_user(session, pipeline.actor_id)
            user = cache[pipeline.actor_id]
            if user is not None:
                actor = {"login": user.login, "avatar_url": avatar_url(base_url, user.id, user.avatar_url)}
        vcs: dict[str, Any] = {
            "provider_name": PROVIDER_NAMES.get(found.org.vcs_type, found.org.vcs_type),
            "origin_repository_url": pipeline.vcs_url,
            "target_repository_url": pipeline.vcs_url,
            "revision": pipeline.revision,
            "commit": {"subject": pipeline.commit_subject, "body": pipeline.commit_body},
        }
        if pipeline.branch is not None:
            vcs["branch"] = pipeline.branch
        if pipeline.tag is not None:
            vcs["tag"] = pipeline.tag
        return {
            "id": pipeline.id,
            "errors": pipeline.errors,
            "project_slug": slug_of(found.project, found.org),
            "updated_at": timestamp(pipeline.updated_at),
            "number": pipeline.number,
            "state": pipeline.state,
            "created_at": timestamp(pipeline.created_at),
            "trigger": {"type": pipeline.trigger_type, "received_at": timestamp(pipeline.created_at), "actor": actor},
            "vcs": vcs,
        }

    # -- pipeline definitions and triggers --------------------------------------------------------

    async def default_definition(self, session: AsyncSession, project: Project) -> PipelineDefinition:
        """Every project has a definition: `.circleci/config.yml` from the project's repository.
        Until a write touches the project's definitions it exists only in this form, with an id
        derived from the project's, so reads never need to write it."""
        existing = await definitions.definitions_of(session, project.id)
        if existing:
            return existing[0]
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

    async def _stored_default(self, session: AsyncSession, project: Project) -> None:
        """Write the default definition down before the project's definitions change."""
        definition = await self.default_definition(session, project)
        if await definitions.get_definition(session, project.id, definition.id) is None and not (
            await definitions.definitions_of(session, project.id)
        ):
            await definitions.add(session, definition)

    async def project_by_id(
        self, session: AsyncSession, principal: Principal, project_id: str, least: str, action: str
    ) -> ProjectInOrg:
        return await self._project_by_id(session, principal, project_id, least, action)

    async def _project_by_id(
        self, session: AsyncSession, principal: Principal, project_id: str, least: str, action: str
    ) -> ProjectInOrg:
        try:
            parsed = uuid.UUID(project_id)
        except ValueError:
            raise BadRequest("project_id: not a UUID.") from None
        found = await self._project(session, parsed)
        if found is None:
            raise NotFound("Project not found.")
        require_role(principal, found.org.id, least, missing="Project not found.", action=action)
        return found

    async def list_definitions(self, session: AsyncSession, principal: Principal, project_id: str) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read pipeline definitions")
        rows = await definitions.definitions_of(session, found.project.id)
        rows = rows or [await self.default_definition(session, found.project)]
        return {"items": [definition_body(d, found.project) for d in rows]}

    async def create_definition(
        self, session: AsyncSession, principal: Principal, project_id: str, body: DefinitionBody
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "create pipeline definitions")
        await self._stored_default(session, found.project)
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
        definition = await self._definition(session, found, definition_id)
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
        definition = await self._definition(session, found, definition_id, write=True)
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
        definition = await self._definition(session, found, definition_id, write=True)
        await definitions.delete_definition(session, definition.id)

    async def _definition(
        self, session: AsyncSession, found: ProjectInOrg, definition_id: uuid.UUID, *, write: bool = False
    ) -> PipelineDefinition:
        if write:
            await self._stored_default(session, found.project)
        definition = await definitions.get_definition(session, found.project.id, definition_id)
        if definition is None:
            default = await self.default_definition(session, found.project)
            definition = default if default.id == definition_id else None
        if definition is None:
            raise NotFound("Pipeline definition not found.")
        return definition

    async def list_triggers(
        self, session: AsyncSession, principal: Principal, project_id: str, definition_id: uuid.UUID
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read triggers")
        definition = await self._definition(session, found, definition_id)
        return {"items": [trigger_body(t) for t in await definitions.triggers_of(session, definition.id)]}

    async def create_trigger(
        self,
        session: AsyncSession,
        principal: Principal,
        project_id: str,
        definition_id: uuid.UUID,
        body: TriggerBody,
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "create triggers")
        definition = await self._definition(session, found, definition_id, write=True)
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
        return trigger_body(trigger)

    async def get_trigger(
        self, session: AsyncSession, principal: Principal, project_id: str, trigger_id: uuid.UUID
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_MEMBER, "read triggers")
        return trigger_body(await self._trigger(session, found, trigger_id))

    async def update_trigger(
        self, session: AsyncSession, principal: Principal, project_id: str, trigger_id: uuid.UUID, body: TriggerBody
    ) -> dict[str, Any]:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "change triggers")
        trigger = await self._trigger(session, found, trigger_id)
        for name in ("event_name", "event_preset", "checkout_ref", "config_ref", "disabled"):
            value = getattr(body, name)
            if value is not None:
                setattr(trigger, name, value)
        if body.event_source is not None and body.event_source.webhook is not None:
            trigger.event_source = {**trigger.event_source, "webhook": body.event_source.webhook.model_dump()}
        await session.flush()
        return trigger_body(trigger)

    async def delete_trigger(
        self, session: AsyncSession, principal: Principal, project_id: str, trigger_id: uuid.UUID
    ) -> None:
        found = await self._project_by_id(session, principal, project_id, ROLE_ADMIN, "delete triggers")
        trigger = await self._trigger(session, found, trigger_id)
        await definitions.delete_trigger(session, trigger.id)

    async def _trigger(self, session: AsyncSession, found: ProjectInOrg, trigger_id: uuid.UUID) -> PipelineTrigger:
        trigger = await definitions.get_trigger(session, found.project.id, trigger_id)
        if trigger is None:
            raise NotFound("Trigger not found.")
        return trigger


def check_file_path(path: str) -> None:
    if len(path) > 1024 or path.startswith(("/", "-")) or ".." in path.split("/") or not path.isprintable():
        raise BadRequest("config_source.file_path: a relative path inside the repository.")


def workflow_body(workflow: Workflow, pipeline: Pipeline, slug: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pipeline_id": workflow.pipeline_id,
        "id": workflow.id,
        "name": workflow.name,
        "project_slug": slug,
        "status": workflow.status,
        "started_by": workflow.started_by or uuid.UUID(int=0),
        "pipeline_number": pipeline.number,
        "created_at": timestamp(workflow.created_at),
        "stopped_at": timestamp(workflow.stopped_at) if workflow.stopped_at else None,
    }
    if workflow.canceled_by is not None:
        body["canceled_by"] = workflow.canceled_by
    if workflow.tag is not None:
        body["tag"] = workflow.tag
    if workflow.max_auto_reruns is not None:
        body["max_auto_reruns"] = workflow.max_auto_reruns
        body["auto_rerun_number"] = workflow.auto_rerun_number
    return body
