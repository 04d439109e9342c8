"""Triggering pipelines and reading them: the Pipeline tag.

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

from circlet.auth import ROLE_MEMBER, Principal, require_role
from circlet.config import ConfigInvalid
from circlet.db.models import Organization, Pipeline, PipelineDefinition, Project, Workflow
from circlet.db.types import utcnow
from circlet.definitions.service import default_definition, find_definition
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
from circlet.orgs.slugs import PROVIDER_NAMES, parse_project_slug, project_slug
from circlet.pipelines import repository as pipeline_projects
from circlet.pipelines.schemas import RunPipeline, TriggerPipeline
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.projects.service import MISSING_PROJECT, ProjectService
from circlet.users import repository as users
from circlet.users.avatars import SYSTEM_AVATAR_KEY, avatar_url

PAGE_SIZE = 20
MAX_PARAMETERS = 100
MISSING_PIPELINE = "Pipeline not found."
ACTOR_LOGIN_VALUE = "trigger_parameters.circleci.actor_login"
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
class PipelineOrigin:
    """What started a pipeline that no API call did (a forge event, a custom webhook): the API's
    `trigger.type`, the actor (a circlet user, or none), and the pipeline values it sets or replaces
    (a value of None removes one)."""

    trigger_type: str
    actor_id: uuid.UUID | None
    values: dict[str, Any]


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


@dataclass
class PipelineService:
    mirrors: GitMirrors
    engine_loops: EngineLoops
    orchestrator: Orchestrator
    project_service: ProjectService
    page_tokens: PageTokens

    # -- triggering -------------------------------------------------------------------------------

    async def default_definition(self, session: AsyncSession, project: Project) -> PipelineDefinition:
        """The definition a trigger without one builds (``definitions.service.default_definition``;
        kept on the service for its callers)."""
        return await default_definition(session, project)

    async def prepare_trigger(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], body: TriggerPipeline
    ) -> TriggerRequest:
        found = await self.project_service.find(session, principal, slug, ROLE_MEMBER, "trigger pipelines")
        one_ref(body.branch, body.tag, "")
        definition = await default_definition(session, found.project)
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
            definition = await find_definition(session, found, definition_id)
        else:
            definition = await default_definition(session, found.project)
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
        principal: Principal | None,
        request: TriggerRequest,
        resolved: Resolved,
        extra_values: dict[str, Any] | None = None,
        *,
        origin: PipelineOrigin | None = None,
    ) -> dict[str, Any]:
        """Record the pipeline as ``pending``; ``origin`` for one that no API call started (then
        ``principal`` may be None); ``extra_values``: pipeline values of the trigger's kind (a
        rollback's ``deploy.*``)."""
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
            "trigger_parameters.circleci.actor_id": str(principal.user_id) if principal else None,
            "config.file_path": request.file_path,
            "definition.id": str(request.definition_id) if request.definition_id else None,
            **(extra_values or {}),
        }
        if origin is not None:
            values.update(origin.values)
        actor_id = origin.actor_id if origin is not None else principal.user_id if principal else None
        pipeline = Pipeline(
            id=pipeline_id,
            project_id=project.id,
            number=number,
            state=states.PIPELINE_PENDING,
            errors=[],
            trigger_type=origin.trigger_type if origin is not None else "api",
            actor_id=actor_id,
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

    async def badge_status(
        self, session: AsyncSession, principal: Principal | None, slug: tuple[str, str, str], branch: str | None
    ) -> str:
        """The status of the latest pipeline on the branch (default: the project's default branch), for
        a status badge: anyone's for an open-source project (its ``oss`` setting, as CircleCI's public
        badges), else only its organization's members'; 404 otherwise, as for any unseen project."""
        parsed = parse_project_slug(*slug)
        found = await projects.find_project(session, parsed) if parsed is not None else None
        if found is None:
            raise NotFound(MISSING_PROJECT)
        stored = await projects.get_settings(session, found.project.id)
        public = stored is not None and stored.oss
        if not public and (principal is None or principal.role_in(found.org.id) is None):
            raise NotFound(MISSING_PROJECT)
        latest = await engine.list_pipelines(
            session,
            [found.project.id],
            branch=branch or found.project.default_branch,
            actor_id=None,
            before=None,
            limit=1,
        )
        if not latest:
            return "none"
        if latest[0].state == "errored":
            return "failed"
        statuses = {workflow.status for workflow in await engine.workflows_of(session, latest[0].id)}
        if not statuses:
            return "running"
        if statuses & {"failed", "error", "failing", "unauthorized"}:
            return "failed"
        if statuses & {"running", "on_hold", "not_run"}:
            return "on_hold" if statuses == {"on_hold"} else "running"
        if statuses == {"success"}:
            return "passed"
        return "canceled"

    async def parameters(self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID) -> dict[str, Any]:
        """The parameters the pipeline was triggered with (the web app shows them; the API has no call)."""
        pipeline, _ = await self.visible_pipeline(session, principal, pipeline_id)
        return dict(pipeline.parameters)

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
        with_workflows: bool = False,
    ) -> dict[str, Any]:
        found = await self.project_service.find(session, principal, slug)
        scope = f"pipelines:{found.project.id}:{branch}:{mine}"
        return await self._page(
            session, principal, [found.project.id], scope, branch, mine, page_token, base_url, with_workflows
        )

    async def list_for_org(
        self,
        session: AsyncSession,
        principal: Principal,
        org_slug: str | None,
        mine: bool,
        page_token: str | None,
        base_url: str,
        *,
        branch: str | None = None,
        with_workflows: bool = False,
    ) -> dict[str, Any]:
        """``branch`` and ``with_workflows`` are the web app's (its dashboard), not the API's."""
        if org_slug is not None:
            org_ids = [(await find_org(session, principal, org_slug)).id]
        else:
            org_ids = sorted(principal.roles)
        project_ids = await pipeline_projects.project_ids_of_orgs(session, org_ids)
        scope = f"pipelines:{','.join(map(str, org_ids))}:{mine}" + (f":{branch}" if branch is not None else "")
        return await self._page(
            session, principal, project_ids, scope, branch, mine, page_token, base_url, with_workflows
        )

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
        with_workflows: bool = False,
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
        projects_found: dict[uuid.UUID, ProjectInOrg | None] = {}  # a page is mostly one project's
        items = []
        for pipeline in rows[:PAGE_SIZE]:
            if pipeline.project_id not in projects_found:
                projects_found[pipeline.project_id] = await self._project(session, pipeline.project_id)
            found = projects_found[pipeline.project_id]
            assert found is not None
            items.append(await self._body(session, pipeline, found, cache, base_url))
        if with_workflows:  # one query for the whole page
            by_pipeline: dict[uuid.UUID, list[dict[str, Any]]] = {}
            for workflow in await engine.workflows_of_pipelines(session, [row.id for row in rows[:PAGE_SIZE]]):
                by_pipeline.setdefault(workflow.pipeline_id, []).append(
                    {
                        "id": workflow.id,
                        "name": workflow.name,
                        "status": workflow.status,
                        "created_at": workflow.created_at,
                        "stopped_at": workflow.stopped_at,
                    }
                )
            for item in items:
                item["workflows"] = by_pipeline.get(item["id"], [])
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
        # A forge's user who is no circlet user is shown by the login the forge gave.
        login = pipeline.values.get(ACTOR_LOGIN_VALUE) or "circlet"
        actor = {"login": login, "avatar_url": avatar_url(base_url, SYSTEM_AVATAR_KEY)}
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

    async def project_by_id(
        self, session: AsyncSession, principal: Principal, project_id: str, least: str, action: str
    ) -> ProjectInOrg:
        """A project by its id, for a caller with at least ``least`` in its organization: 400 for an
        id that is not a UUID, 404 for a project they may not see."""
        try:
            parsed = uuid.UUID(project_id)
        except ValueError:
            raise BadRequest("project_id: not a UUID.") from None
        found = await self._project(session, parsed)
        if found is None:
            raise NotFound("Project not found.")
        require_role(principal, found.org.id, least, missing="Project not found.", action=action)
        return found


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
