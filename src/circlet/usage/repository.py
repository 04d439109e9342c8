"""Every query of the Usage tag: export jobs, and the job runs an export writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import PLAIN, STAMP, TIME, UUID, RawQuery, fetch_all
from circlet.db.models import Job, Project, UsageExport
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


# The export reads up to a million rows: fixed SQL on the driver's connection (``db.dialect.fetch_all``),
# times as the RFC 3339 text the CSV holds (``STAMP``), in keyset batches per project over the
# (project_id, started_at) index. Through the ORM's result processing it cost ~15 times more.
_JOB_RUNS = RawQuery(
    """SELECT organizations.id, organizations.name, organizations.created_at, organizations.vcs_type,
    projects.id, projects.name, projects.created_at, projects.vcs_url, pipelines.vcs_url, pipelines.branch,
    pipelines.id, pipelines.created_at, pipelines.number, pipelines.trigger_type, pipelines.actor_id,
    workflows.id, workflows.name, workflows.stopped_at, workflows.status,
    jobs.name, jobs.number, jobs.id, jobs.queued_at, jobs.started_at, jobs.stopped_at, jobs.status,
    jobs.resource_class, jobs.executor_type, jobs.parallelism, jobs.started_at
    FROM jobs JOIN projects ON projects.id = jobs.project_id
    JOIN organizations ON organizations.id = projects.org_id
    JOIN workflows ON workflows.id = jobs.workflow_id
    JOIN pipelines ON pipelines.id = jobs.pipeline_id
    WHERE jobs.project_id = ? AND jobs.type = 'build' AND jobs.started_at >= ? AND jobs.started_at <= ?
    AND (jobs.started_at > ? OR (jobs.started_at = ? AND jobs.id > ?))
    ORDER BY jobs.started_at, jobs.id
    LIMIT ?""",
    params=(UUID, TIME, TIME, TIME, TIME, UUID, PLAIN),
    columns=(
        (UUID, PLAIN, STAMP, PLAIN)
        + (UUID, PLAIN, STAMP, PLAIN, PLAIN, PLAIN)
        + (UUID, STAMP, PLAIN, PLAIN, UUID)
        + (UUID, PLAIN, STAMP, PLAIN)
        + (PLAIN, PLAIN, UUID, STAMP, STAMP, STAMP, PLAIN, PLAIN, PLAIN, PLAIN, TIME)
    ),
)
NO_ID = uuid.UUID(int=0)


async def org_project_ids(session: AsyncSession, org_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    query = select(Project.id).where(Project.org_id.in_(org_ids)).order_by(Project.id)
    return list((await session.execute(query)).scalars())


async def workflow_firsts(
    session: AsyncSession, org_ids: Sequence[uuid.UUID], start: datetime, end: datetime
) -> dict[uuid.UUID, tuple[datetime | None, datetime | None]]:
    """The first queued and first started times of each workflow among the job runs of the range: one
    grouping pass, instead of two lookups per row."""
    query = (
        select(Job.workflow_id, func.min(Job.queued_at), func.min(Job.started_at))
        .join(Project, Project.id == Job.project_id)
        .where(Project.org_id.in_(org_ids), Job.type == "build", Job.started_at >= start, Job.started_at <= end)
        .group_by(Job.workflow_id)
    )
    return {row[0]: (row[1], row[2]) for row in (await session.execute(query)).all()}


async def job_runs(
    session: AsyncSession, project_ids: Sequence[uuid.UUID], start: datetime, end: datetime, batch: int
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The build job runs that started in [start, end], project by project, oldest first, in batches
    (memory stays bounded whatever the count); the last column of a row is its keyset position."""
    for project_id in project_ids:
        after: tuple[datetime, uuid.UUID] = (start, NO_ID)
        while True:
            rows = await fetch_all(session, _JOB_RUNS, project_id, start, end, after[0], after[0], after[1], batch)
            if not rows:
                break
            yield rows
            after = (rows[-1][-1], rows[-1][21])
            if len(rows) < batch:
                break
