"""What may be done with jobs: members of any role read them; members and admins cancel them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_MEMBER, ROLE_VIEWER, Principal, require_role
from circlet.blobs import BlobStore
from circlet.db.models import Job
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.orchestrator import Orchestrator
from circlet.http.errors import BadRequest, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.orgs import repository as orgs
from circlet.pipelines.service import slug_of
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.projects.service import ProjectService
from circlet.storage import repository as storage

MISSING = "Job not found."
RUNNER_SILENT_AFTER = timedelta(seconds=60)
PAGE_SIZE = 100


@dataclass
class JobService:
    orchestrator: Orchestrator
    project_service: ProjectService
    base_url: str
    blobs: BlobStore
    page_tokens: PageTokens

    async def by_number(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        least: str = ROLE_VIEWER,
        action: str = "read it",
    ) -> tuple[Job, ProjectInOrg]:
        found = await self.project_service.find(session, principal, slug, least, action)
        job = await engine.job_by_number(session, found.project.id, number)
        if job is None:
            raise NotFound(MISSING)
        return job, found

    async def details(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int
    ) -> dict[str, Any]:
        job, found = await self.by_number(session, principal, slug, number)
        workflow = await engine.get_workflow(session, job.workflow_id)
        pipeline = await engine.get_pipeline(session, job.pipeline_id)
        assert workflow is not None and pipeline is not None
        tasks = await engine.tasks_of(session, [job.reused_from or job.id])
        project_slug = slug_of(found.project, found.org)
        messages = [{"type": "info", "message": job.message}] if job.message else []
        if job.status == states.QUEUED:
            waiting = await self._why_queued(session, job.resource_class)
            if waiting:
                messages.append({"type": "info", "message": waiting, "reason": "no_runner"})
        duration = None
        if job.started_at and job.stopped_at:
            duration = int((job.stopped_at - job.started_at).total_seconds() * 1000)
        web_url = (
            f"{self.base_url}/pipelines/{project_slug}/{pipeline.number}/workflows/{workflow.id}/jobs/{job.number}"
        )
        return {
            "web_url": web_url,
            "project": {
                "id": found.project.id,
                "slug": project_slug,
                "name": found.project.name,
                "external_url": found.project.vcs_url,
            },
            "parallel_runs": [{"index": task.parallel_index, "status": task.status} for task in tasks],
            "started_at": timestamp(job.started_at) if job.started_at else None,
            "latest_workflow": {"id": workflow.id, "name": workflow.name},
            "name": job.name,
            "executor": {"resource_class": job.resource_class, "type": job.executor_type},
            "parallelism": job.parallelism,
            "status": job.status,
            "number": job.number,
            "pipeline": {"id": pipeline.id},
            "duration": duration,
            "created_at": timestamp(job.created_at),
            "messages": messages,
            "contexts": [{"name": name} for name in job.contexts],
            "organization": {"name": found.org.name},
            # The spec makes it a required time; a job never queued (blocked, not_run) has none.
            "queued_at": timestamp(job.queued_at) if job.queued_at else None,
            "stopped_at": timestamp(job.stopped_at) if job.stopped_at else None,
        }

    async def _why_queued(self, session: AsyncSession, resource_class: str) -> str | None:
        tokens, seen = await engine.runner_last_seen(session, resource_class)
        if tokens == 0:
            return (
                f"No runner is registered for resource class {resource_class}: the job waits until one "
                f"claims it (circlet admin runner token create --resource-class {resource_class})."
            )
        if seen is None or utcnow() - seen > RUNNER_SILENT_AFTER:
            return f"No runner of resource class {resource_class} has asked for work recently: the job waits."
        return None

    async def cancel_by_number(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int
    ) -> None:
        job, _ = await self.by_number(session, principal, slug, number, ROLE_MEMBER, "cancel jobs")
        await self._cancel(session, principal, job)

    async def cancel_by_id(self, session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> None:
        job = await engine.get_job(session, job_id)
        project = await projects.get_project(session, job.project_id) if job else None
        org = await orgs.get_org(session, project.org_id) if project else None
        if job is None or org is None:
            raise NotFound(MISSING)
        require_role(principal, org.id, ROLE_MEMBER, missing=MISSING, action="cancel jobs")
        await self._cancel(session, principal, job)

    async def _cancel(self, session: AsyncSession, principal: Principal, job: Job) -> None:
        if job.status in states.JOB_FINAL:
            raise BadRequest(f"The job has already ended ({job.status}).")
        workflow = await engine.get_workflow(session, job.workflow_id, lock=True)
        await self.orchestrator.cancel_job(session, job, principal.user_id)
        pipeline = await engine.get_pipeline(session, job.pipeline_id)
        project = await projects.get_project(session, job.project_id)
        assert workflow is not None and pipeline is not None and project is not None
        await self.orchestrator.advance(session, workflow, pipeline, project.org_id)

    async def _ran(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int
    ) -> tuple[Job, ProjectInOrg]:
        """The job that holds the stored things: a job a rerun carried over stands for its original."""
        job, found = await self.by_number(session, principal, slug, number)
        if job.reused_from is not None:
            job = await engine.get_job(session, job.reused_from) or job
        return job, found

    def _after(self, page_token: str | None, scope: str) -> int:
        if not page_token:
            return 0
        position = self.page_tokens.decode(page_token, scope)
        if len(position) != 1 or not isinstance(position[0], int):
            raise BadRequest("page-token is invalid.")
        return position[0]

    async def artifacts(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        job, found = await self._ran(session, principal, slug, number)
        scope = f"artifacts:{job.id}"
        rows = await storage.artifacts_of(session, job.id, self._after(page_token, scope), PAGE_SIZE)
        base = f"{self.base_url}/api/v2/project/{slug_of(found.project, found.org)}/{number}/artifacts"
        items = [
            {"path": row.path, "node_index": row.node_index, "url": f"{base}/{row.node_index}/{row.path}"}
            for row in rows
        ]
        next_token = self.page_tokens.encode(scope, [rows[-1].id]) if len(rows) == PAGE_SIZE else None
        return {"items": items, "next_page_token": next_token}

    async def artifact_stream(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        node_index: int,
        path: str,
    ) -> AsyncIterator[bytes]:
        """The bytes of one artifact; 404 when the caller may not see the project, or there is none."""
        job, _ = await self._ran(session, principal, slug, number)
        row = await storage.artifact(session, job.id, node_index, path)
        if row is None:
            raise NotFound("Artifact not found.")
        try:
            return self.blobs.get(row.blob_id)
        except FileNotFoundError:
            raise NotFound("Artifact not found.") from None

    async def tests(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        job, _ = await self._ran(session, principal, slug, number)
        scope = f"tests:{job.id}"
        rows = await storage.test_results_of(session, job.id, self._after(page_token, scope), PAGE_SIZE)
        items = [
            {
                "message": row.message,
                "source": row.source,
                "run_time": row.run_time,
                "file": row.file,
                "result": row.result,
                "name": row.name,
                "classname": row.classname,
            }
            for row in rows
        ]
        next_token = self.page_tokens.encode(scope, [rows[-1].id]) if len(rows) == PAGE_SIZE else None
        return {"items": items, "next_page_token": next_token}
