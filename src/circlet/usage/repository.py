"""Every query of the Usage tag: export jobs, and the job runs an export writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from circlet.db.models import Job, Organization, Pipeline, Project, UsageExport, Workflow
from circlet.db.types import utcnow


async def add_export(
    session: AsyncSession,
    org_id: uuid.UUID,
    requested_by: uuid.UUID | None,
    start: datetime,
    end: datetime,
    shared_org_ids: Sequence[uuid.UUID],
) -> UsageExport:
    export = UsageExport(
        org_id=org_id,
        requested_by=requested_by,
        start=start,
        end=end,
        shared_org_ids=[str(o) for o in shared_org_ids],
        state="processing",
        blob_ids=[],
        rows=0,
    )
    session.add(export)
    await session.flush()
    return export


async def get_export(session: AsyncSession, export_id: uuid.UUID) -> UsageExport | None:
    return await session.get(UsageExport, export_id)


async def finish_export(
    session: AsyncSession, export_id: uuid.UUID, state: str, blob_ids: list[str], rows: int, error: str | None
) -> None:
    await session.execute(
        update(UsageExport)
        .where(UsageExport.id == export_id)
        .values(state=state, blob_ids=blob_ids, rows=rows, error_reason=error, updated_at=utcnow())
    )


async def last_build_finished(session: AsyncSession, org_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    query = select(Job.project_id, func.max(Job.stopped_at)).join(Project, Project.id == Job.project_id)
    query = query.where(Project.org_id.in_(org_ids)).group_by(Job.project_id)
    return {row[0]: row[1] for row in (await session.execute(query)).all() if row[1] is not None}


def job_runs_query(org_ids: Sequence[uuid.UUID], start: datetime, end: datetime) -> Any:
    """Build job runs that started in [start, end], of the organizations' projects, with what each
    row of the export names; the first queued and started times of its workflow by its index of jobs."""
    sibling = aliased(Job)
    first_queued = select(func.min(sibling.queued_at)).where(sibling.workflow_id == Job.workflow_id).scalar_subquery()
    first_started = select(func.min(sibling.started_at)).where(sibling.workflow_id == Job.workflow_id).scalar_subquery()
    return (
        select(
            Organization.id,
            Organization.name,
            Organization.created_at,
            Organization.vcs_type,
            Project.id,
            Project.name,
            Project.created_at,
            Project.vcs_url,
            Pipeline.vcs_url,
            Pipeline.branch,
            Pipeline.id,
            Pipeline.created_at,
            Pipeline.number,
            Pipeline.trigger_type,
            Pipeline.actor_id,
            Workflow.id,
            Workflow.name,
            first_queued,
            first_started,
            Workflow.stopped_at,
            Workflow.status,
            Job.name,
            Job.number,
            Job.id,
            Job.queued_at,
            Job.started_at,
            Job.stopped_at,
            Job.status,
            Job.resource_class,
            Job.executor_type,
            Job.parallelism,
        )
        .select_from(Job)
        .join(Project, Project.id == Job.project_id)
        .join(Organization, Organization.id == Project.org_id)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(
            Project.org_id.in_(org_ids),
            Job.type == "build",
            Job.started_at >= start,
            Job.started_at <= end,
        )
        .order_by(Job.started_at, Job.id)
    )


async def stream_job_runs(
    session: AsyncSession, org_ids: Sequence[uuid.UUID], start: datetime, end: datetime, batch: int
) -> AsyncIterator[Sequence[Any]]:
    """The rows in batches, streamed from the database (memory stays bounded whatever the count)."""
    result = await session.stream(job_runs_query(org_ids, start, end).execution_options(yield_per=batch))
    async for partition in result.partitions(batch):
        yield partition
