"""What may be done with workflows, by whom: members of any role read them; members and admins
approve, cancel and rerun; anyone outside the organization gets 404."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_MEMBER, ROLE_VIEWER, Principal, require_role
from circlet.db.models import Job, Pipeline, Workflow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.orchestrator import Orchestrator
from circlet.http.errors import BadRequest, NotFound
from circlet.http.responses import timestamp
from circlet.orgs import repository as orgs
from circlet.pipelines.service import slug_of, workflow_body
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.workflows.schemas import Rerun

MISSING = "Workflow not found."


def workflow_job_body(job: Job, ids: dict[str, uuid.UUID], slug: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "type": job.type,
        "status": job.status,
        "project_slug": slug,
        "dependencies": [ids[name] for name in job.requires if name in ids],
        "requires": {str(ids[name]): accepted for name, accepted in job.requires.items() if name in ids},
        "started_at": timestamp(job.started_at) if job.started_at else None,
        "stopped_at": timestamp(job.stopped_at) if job.stopped_at else None,
    }
    if job.number is not None:
        body["job_number"] = job.number
    if job.approval_request_id is not None:
        body["approval_request_id"] = job.approval_request_id
    if job.approved_by is not None:
        body["approved_by"] = job.approved_by
    if job.canceled_by is not None:
        body["canceled_by"] = job.canceled_by
    return body


@dataclass
class WorkflowService:
    orchestrator: Orchestrator

    async def find(
        self,
        session: AsyncSession,
        principal: Principal,
        workflow_id: uuid.UUID,
        least: str = ROLE_VIEWER,
        action: str = "read it",
        *,
        lock: bool = False,
    ) -> tuple[Workflow, Pipeline, ProjectInOrg]:
        workflow = await engine.get_workflow(session, workflow_id, lock=lock)
        project = await projects.get_project(session, workflow.project_id) if workflow else None
        org = await orgs.get_org(session, project.org_id) if project else None
        if workflow is None or project is None or org is None:
            raise NotFound(MISSING)
        require_role(principal, org.id, least, missing=MISSING, action=action)
        pipeline = await engine.get_pipeline(session, workflow.pipeline_id)
        assert pipeline is not None
        return workflow, pipeline, ProjectInOrg(project, org)

    async def get(self, session: AsyncSession, principal: Principal, workflow_id: uuid.UUID) -> dict[str, Any]:
        workflow, pipeline, found = await self.find(session, principal, workflow_id)
        return workflow_body(workflow, pipeline, slug_of(found.project, found.org))

    async def jobs(
        self, session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, page_token: str | None
    ) -> dict[str, Any]:
        """All jobs on one page: a workflow's jobs are few, so no page token is ever issued."""
        workflow, _, found = await self.find(session, principal, workflow_id)
        if page_token:
            raise BadRequest("page-token is invalid.")
        jobs = await engine.jobs_of(session, workflow.id)
        ids = {job.name: job.id for job in jobs}
        slug = slug_of(found.project, found.org)
        return {"items": [workflow_job_body(job, ids, slug) for job in jobs], "next_page_token": None}

    async def jobs_of_pipeline(
        self, session: AsyncSession, principal: Principal, pipeline_id: uuid.UUID
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """``jobs`` of each of the pipeline's workflows, by workflow id, in one query (the web app's
        pipeline page draws them all)."""
        pipeline = await engine.get_pipeline(session, pipeline_id)
        project = await projects.get_project(session, pipeline.project_id) if pipeline else None
        org = await orgs.get_org(session, project.org_id) if project else None
        if pipeline is None or project is None or org is None:
            raise NotFound(MISSING)
        require_role(principal, org.id, ROLE_VIEWER, missing=MISSING, action="read it")
        slug = slug_of(project, org)
        by_workflow: dict[uuid.UUID, list[Job]] = {}
        for job in await engine.jobs_of_pipeline(session, pipeline.id):
            by_workflow.setdefault(job.workflow_id, []).append(job)
        bodies = {}
        for workflow_id, jobs in by_workflow.items():
            ids = {job.name: job.id for job in jobs}
            bodies[workflow_id] = [workflow_job_body(job, ids, slug) for job in jobs]
        return bodies

    async def approve(
        self, session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, approval_request_id: uuid.UUID
    ) -> None:
        workflow, pipeline, found = await self.find(
            session, principal, workflow_id, ROLE_MEMBER, "approve jobs", lock=True
        )
        job = next(
            (
                j
                for j in await engine.jobs_of(session, workflow.id)
                if j.type == "approval" and j.approval_request_id == approval_request_id
            ),
            None,
        )
        if job is None:
            raise NotFound("Approval request not found.")
        if job.status != states.ON_HOLD:
            raise BadRequest(f"The approval job is {job.status}, not on hold: there is nothing to approve.")
        await self.orchestrator.approve(session, workflow, job, pipeline, found.org.id, principal.user_id)

    async def cancel(self, session: AsyncSession, principal: Principal, workflow_id: uuid.UUID) -> None:
        workflow, _, _ = await self.find(session, principal, workflow_id, ROLE_MEMBER, "cancel workflows", lock=True)
        await self.orchestrator.cancel_workflow(session, workflow, principal.user_id)

    async def rerun(
        self, session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, body: Rerun
    ) -> dict[str, Any]:
        workflow, pipeline, found = await self.find(
            session, principal, workflow_id, ROLE_MEMBER, "rerun workflows", lock=True
        )
        if workflow.status not in states.WORKFLOW_FINAL:
            raise BadRequest("The workflow is still running: cancel it or wait for it to finish before a rerun.")
        if body.from_failed and body.jobs:
            raise BadRequest("from_failed and jobs are mutually exclusive.")
        if body.sparse_tree and not body.jobs:
            raise BadRequest("sparse_tree requires jobs.")
        selected = None
        if body.jobs:
            by_id = {str(job.id): job.name for job in await engine.jobs_of(session, workflow.id)}
            unknown = [job_id for job_id in body.jobs if job_id not in by_id]
            if unknown:
                raise BadRequest(f"jobs: not jobs of this workflow: {', '.join(unknown[:5])}.")
            selected = {by_id[job_id] for job_id in body.jobs}
        if body.from_failed and workflow.status == states.WF_SUCCESS:
            raise BadRequest("The workflow has no failed jobs to rerun.")
        new = await self.orchestrator.rerun(
            session, workflow, pipeline, found.org.id, principal.user_id, selected, bool(body.from_failed)
        )
        return {"workflow_id": new.id}
