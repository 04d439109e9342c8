"""Deploy markers, the Deploy tag's reads and the Rollback tag (docs/compatibility.md, "Deploys").

Environments and components are created by the first deploy marker naming them: an environment
per organization (``default`` when the marker names none), a component per project (named after the
project when the marker names none). A marker is a release: ``plan`` makes it ``PENDING``, ``update``
moves it to ``RUNNING``, ``SUCCESS``, ``FAILED`` or ``CANCELED`` (a release that ended is final), and
``log`` records one that already succeeded. A component's versions are its successful releases; the
live one of an environment and namespace is the latest.

A rollback runs the project's rollback pipeline definition (named ``rollback``, or configured from a
``rollback.yml``) with the deploy's values (``pipeline.deploy.*``) and the given parameters; a
project without one reruns the workflow that deployed the target version, as CircleCI's UI does.
Either way a ``PENDING`` release of the target version is recorded, tied to the new run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_MEMBER, ROLE_VIEWER, Principal, require_role
from circlet.db.models import DeployComponent, DeployEnvironment, DeployRelease, Job, Project
from circlet.deploys import repository as deploys
from circlet.deploys.schemas import ReleaseMarker, Rollback
from circlet.http.errors import BadRequest, Conflict, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.pipelines.service import PipelineService, Resolved, TriggerRequest
from circlet.workflows.schemas import Rerun
from circlet.workflows.service import WorkflowService

MISSING_ORG = "Organization not found."
MISSING_ENVIRONMENT = "Environment not found."
MISSING_COMPONENT = "Component not found."
MAX_PAGE_SIZE = 100
VERSIONS_READ = 1000
STATUSES = ("RUNNING", "SUCCESS", "FAILED", "CANCELED")
FINAL = ("SUCCESS", "FAILED", "CANCELED")


def parse_id(text: str | None, missing: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        raise NotFound(missing) from None


def environment_body(environment: DeployEnvironment) -> dict[str, Any]:
    return {
        "id": environment.id,
        "name": environment.name,
        "description": environment.description,
        "labels": environment.labels,
        "created_at": timestamp(environment.created_at),
        "updated_at": timestamp(environment.updated_at),
    }


def component_body(component: DeployComponent, release_count: int) -> dict[str, Any]:
    return {
        "id": component.id,
        "name": component.name,
        "project_id": component.project_id,
        "labels": component.labels,
        "release_count": release_count,
        "created_at": timestamp(component.created_at),
        "updated_at": timestamp(component.updated_at),
    }


@dataclass
class RollbackPlan:
    project: Project
    component: DeployComponent
    environment: DeployEnvironment
    namespace: str
    body: Rollback
    deployed_by: DeployRelease
    trigger: TriggerRequest | None  # None: rerun the workflow that deployed the target version


@dataclass
class DeployService:
    page_tokens: PageTokens
    pipelines: PipelineService
    workflows: WorkflowService

    # -- reads -----------------------------------------------------------------------------------

    def _page(
        self, scope: str, page_size: int, page_token: str | None
    ) -> tuple[int, tuple[datetime, uuid.UUID] | None]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadRequest(f"page-size must be between 1 and {MAX_PAGE_SIZE}.")
        if not page_token:
            return page_size, None
        position = self.page_tokens.decode(page_token, scope)
        try:
            return page_size, (datetime.fromisoformat(position[0]), uuid.UUID(position[1]))
        except (ValueError, TypeError, IndexError):
            raise BadRequest("page-token is invalid.") from None

    def _next(self, scope: str, rows: list[Any], size: int, stamp: Any) -> str | None:
        if len(rows) <= size:
            return None
        created_at, row_id = stamp(rows[size - 1])
        return self.page_tokens.encode(scope, [created_at.isoformat(), str(row_id)])

    async def list_environments(
        self, session: AsyncSession, principal: Principal, org_id: str, page_size: int, page_token: str | None
    ) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_VIEWER, missing=MISSING_ORG, action="read environments")
        scope = f"deploy-environments:{org}"
        size, after = self._page(scope, page_size, page_token)
        rows = await deploys.list_environments(session, org, after, size + 1)
        return {
            "items": [environment_body(e) for e in rows[:size]],
            "next_page_token": self._next(scope, rows, size, lambda e: (e.created_at, e.id)),
        }

    async def get_environment(self, session: AsyncSession, principal: Principal, environment_id: str) -> dict[str, Any]:
        environment = await deploys.get_environment(session, parse_id(environment_id, MISSING_ENVIRONMENT))
        if environment is None or principal.role_in(environment.org_id) is None:
            raise NotFound(MISSING_ENVIRONMENT)
        return environment_body(environment)

    async def list_components(
        self,
        session: AsyncSession,
        principal: Principal,
        org_id: str,
        project_id: str | None,
        page_size: int,
        page_token: str | None,
    ) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_VIEWER, missing=MISSING_ORG, action="read components")
        project = parse_id(project_id, "Project not found.") if project_id is not None else None
        scope = f"deploy-components:{org}:{project}"
        size, after = self._page(scope, page_size, page_token)
        rows = await deploys.list_components(session, org, project, after, size + 1)
        return {
            "items": [component_body(c, count) for c, count in rows[:size]],
            "next_page_token": self._next(scope, rows, size, lambda r: (r[0].created_at, r[0].id)),
        }

    async def _component(
        self, session: AsyncSession, principal: Principal, component_id: str
    ) -> tuple[DeployComponent, int]:
        found = await deploys.get_component(session, parse_id(component_id, MISSING_COMPONENT))
        if found is None or principal.role_in(found[0].org_id) is None:
            raise NotFound(MISSING_COMPONENT)
        return found

    async def get_component(self, session: AsyncSession, principal: Principal, component_id: str) -> dict[str, Any]:
        return component_body(*await self._component(session, principal, component_id))

    async def list_versions(
        self, session: AsyncSession, principal: Principal, component_id: str, environment_id: str | None
    ) -> dict[str, Any]:
        component, _ = await self._component(session, principal, component_id)
        environment = parse_id(environment_id, MISSING_ENVIRONMENT) if environment_id is not None else None
        live: dict[tuple[uuid.UUID, str], str] = {}
        seen: set[tuple[str, uuid.UUID, str]] = set()
        items = []
        for release in await deploys.successful_releases(session, component.id, environment, VERSIONS_READ):
            where = (release.environment_id, release.namespace)
            live.setdefault(where, release.version)
            key = (release.version, *where)
            if key in seen:
                continue
            seen.add(key)
            items.append(
                {
                    "name": release.version,
                    "environment_id": release.environment_id,
                    "namespace": release.namespace,
                    "is_live": live[where] == release.version,
                    "pipeline_id": release.pipeline_id,
                    "workflow_id": release.workflow_id,
                    "job_id": release.job_id,
                    "job_number": release.job_number,
                    "last_deployed_at": timestamp(release.updated_at),
                }
            )
        return {"items": items, "next_page_token": None}

    # -- markers from jobs -------------------------------------------------------------------------

    async def record_marker(self, session: AsyncSession, job_id: uuid.UUID, marker: ReleaseMarker) -> dict[str, Any]:
        """A deploy marker of a running job (the runner protocol's ``releases`` call)."""
        found = await deploys.job_context(session, job_id)
        if found is None:
            raise NotFound("Job not found.")
        job, project = found
        if marker.action == "update":
            return await self._update(session, job, marker)
        if not marker.target_version:
            raise BadRequest("--target-version is required.")
        if marker.action == "plan" and await deploys.latest_release_named(session, job.workflow_id, marker.deploy_name):
            raise Conflict(f"A deploy named {marker.deploy_name} was already planned in this workflow.")
        environment_name = marker.environment_name or "default"
        environment = await deploys.find_environment(session, project.org_id, environment_name)
        if environment is None:
            environment = await deploys.add_environment(session, project.org_id, environment_name)
        component_name = marker.component_name or project.name
        component = await deploys.find_component(session, project.id, component_name)
        if component is None:
            component = await deploys.add_component(session, project.org_id, project.id, component_name)
        release = await deploys.add_release(
            session,
            DeployRelease(
                component_id=component.id,
                environment_id=environment.id,
                name=marker.deploy_name,
                version=marker.target_version,
                namespace=marker.namespace or "default",
                status="PENDING" if marker.action == "plan" else "SUCCESS",
                pipeline_id=job.pipeline_id,
                workflow_id=job.workflow_id,
                job_id=job.id,
                job_number=job.number,
            ),
        )
        return {"id": release.id, "status": release.status}

    async def _update(self, session: AsyncSession, job: Job, marker: ReleaseMarker) -> dict[str, Any]:
        status = (marker.status or "").upper()
        if status not in STATUSES:
            raise BadRequest(f"--status must be one of {', '.join(STATUSES)}.")
        release = await deploys.latest_release_named(session, job.workflow_id, marker.deploy_name)
        if release is None:
            raise NotFound(f"No deploy named {marker.deploy_name} was planned in this workflow.")
        if release.status in FINAL:
            raise Conflict(f"The deploy {marker.deploy_name} already ended {release.status}.")
        deploys.touch(release, status, marker.failure_reason if status == "FAILED" else None)
        return {"id": release.id, "status": release.status}

    # -- rollback --------------------------------------------------------------------------------

    async def plan_rollback(
        self, session: AsyncSession, principal: Principal, project_id: str, body: Rollback
    ) -> RollbackPlan:
        found = await self.pipelines.project_by_id(session, principal, project_id, ROLE_MEMBER, "roll back")
        project = found.project
        component = await deploys.find_component(session, project.id, body.component_name)
        if component is None:
            raise NotFound(MISSING_COMPONENT)
        environment = await deploys.find_environment(session, project.org_id, body.environment_name)
        if environment is None:
            raise NotFound(MISSING_ENVIRONMENT)
        namespace = body.namespace or "default"
        releases = [
            r
            for r in await deploys.successful_releases(session, component.id, environment.id, VERSIONS_READ)
            if r.namespace == namespace
        ]
        if not releases or releases[0].version != body.current_version:
            raise Conflict(f"{body.current_version} is not the live version of {component.name} in {environment.name}.")
        if body.target_version == body.current_version:
            raise BadRequest("target_version is the current version.")
        deployed_by = next((r for r in releases if r.version == body.target_version), None)
        if deployed_by is None:
            raise NotFound(f"Version {body.target_version} was never deployed to {environment.name}.")
        definition = await deploys.rollback_definition(session, project.id)
        trigger = None
        if definition is not None:
            trigger = TriggerRequest(
                found,
                definition.checkout_repo_url or project.vcs_url,
                project.default_branch,
                None,
                project.default_branch,
                None,
                dict(body.parameters or {}),
                definition.id,
                definition.config_file_path,
                None,
            )
        elif deployed_by.workflow_id is None:
            raise NotFound("The workflow that deployed the target version is gone, and there is no rollback pipeline.")
        return RollbackPlan(project, component, environment, namespace, body, deployed_by, trigger)

    async def start_rollback(
        self, session: AsyncSession, principal: Principal, plan: RollbackPlan, resolved: Resolved | None
    ) -> tuple[dict[str, Any], uuid.UUID | None]:
        """The rollback's run, and its pending release; the pipeline to start after the commit, if any."""
        body = plan.body
        pipeline_id = workflow_id = None
        if plan.trigger is not None and resolved is not None:
            values = {
                "deploy.component_name": body.component_name,
                "deploy.environment_name": body.environment_name,
                "deploy.target_version": body.target_version,
                "deploy.current_version": body.current_version,
                "deploy.namespace": plan.namespace,
                "deploy.reason": body.reason or "",
            }
            created = await self.pipelines.create_pipeline(session, principal, plan.trigger, resolved, values)
            pipeline_id, kind = created["id"], "PIPELINE"
        else:
            assert plan.deployed_by.workflow_id is not None
            rerun = await self.workflows.rerun(session, principal, plan.deployed_by.workflow_id, Rerun())
            workflow_id, kind = rerun["workflow_id"], "WORKFLOW_RERUN"
        release = await deploys.add_release(
            session,
            DeployRelease(
                component_id=plan.component.id,
                environment_id=plan.environment.id,
                name="rollback",
                version=body.target_version,
                namespace=plan.namespace,
                status="PENDING",
                pipeline_id=pipeline_id or plan.deployed_by.pipeline_id,
                workflow_id=workflow_id,
                rollback_of=body.current_version,
            ),
        )
        return {"id": release.id, "rollback_type": kind}, pipeline_id
