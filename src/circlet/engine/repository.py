"""Every query of the engine: pipelines, workflows, jobs, tasks, steps, runner tokens, counters."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import (
    Job,
    Pipeline,
    ProjectCounter,
    RunnerToken,
    StepOutput,
    StepRun,
    Task,
    Workflow,
)
from circlet.db.types import utcnow

# -- numbers --------------------------------------------------------------------------------------


async def next_numbers(
    session: AsyncSession, project_id: uuid.UUID, *, pipelines: int = 0, jobs: int = 0
) -> tuple[int, int]:
    """Reserve ``pipelines`` pipeline numbers and ``jobs`` job numbers of a project; returns the
    first of each. One UPDATE on one row: concurrent triggers queue on its lock (PostgreSQL) or on
    the single writer (SQLite), so numbers are sequential and never handed out twice."""
    table = ProjectCounter.__table__
    await session.execute(
        insert_for(session, table)  # type: ignore[arg-type]
        .values(project_id=project_id, pipeline_number=0, job_number=0)
        .on_conflict_do_nothing(index_elements=["project_id"])
    )
    row = (
        await session.execute(
            update(ProjectCounter)
            .where(ProjectCounter.project_id == project_id)
            .values(
                pipeline_number=ProjectCounter.pipeline_number + pipelines,
                job_number=ProjectCounter.job_number + jobs,
            )
            .returning(ProjectCounter.pipeline_number, ProjectCounter.job_number)
        )
    ).one()
    return row[0] - pipelines + 1, row[1] - jobs + 1


# -- pipelines ------------------------------------------------------------------------------------


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


async def get_pipeline(session: AsyncSession, pipeline_id: uuid.UUID, *, lock: bool = False) -> Pipeline | None:
    query = select(Pipeline).where(Pipeline.id == pipeline_id)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


# Pipeline and job numbers are 32-bit columns: a number outside that range names nothing, and
# PostgreSQL would reject it as a parameter rather than find no row.
NUMBER_RANGE = range(0, 2**31)


async def get_pipeline_by_number(session: AsyncSession, project_id: uuid.UUID, number: int) -> Pipeline | None:
    if number not in NUMBER_RANGE:
        return None
    query = select(Pipeline).where(Pipeline.project_id == project_id, Pipeline.number == number)
    return (await session.execute(query)).scalar_one_or_none()


async def find_pipeline_by_continuation(session: AsyncSession, key_hash: str) -> Pipeline | None:
    query = select(Pipeline).where(Pipeline.continuation_key_hash == key_hash).with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_pipelines(
    session: AsyncSession,
    project_ids: Sequence[uuid.UUID],
    *,
    branch: str | None,
    actor_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Pipeline]:
    """Newest first, keyset on (created_at, id)."""
    query = select(Pipeline).where(Pipeline.project_id.in_(project_ids))
    if branch is not None:
        query = query.where(Pipeline.branch == branch)
    if actor_id is not None:
        query = query.where(Pipeline.actor_id == actor_id)
    if before is not None:
        query = query.where(
            (Pipeline.created_at < before[0]) | ((Pipeline.created_at == before[0]) & (Pipeline.id < before[1]))
        )
    query = query.order_by(Pipeline.created_at.desc(), Pipeline.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def pending_pipelines(session: AsyncSession, older_than: datetime, limit: int) -> list[uuid.UUID]:
    query = (
        select(Pipeline.id)
        .where(Pipeline.state == "pending", Pipeline.updated_at < older_than)
        .order_by(Pipeline.created_at)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


# -- workflows ------------------------------------------------------------------------------------


async def get_workflow(session: AsyncSession, workflow_id: uuid.UUID, *, lock: bool = False) -> Workflow | None:
    """With ``lock``, the row is locked (PostgreSQL) and re-read: DAG moves of one workflow queue."""
    query = select(Workflow).where(Workflow.id == workflow_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def workflows_of_pipelines(session: AsyncSession, pipeline_ids: Sequence[uuid.UUID]) -> list[Workflow]:
    """The workflows of several pipelines (a page of them), oldest first within each."""
    if not pipeline_ids:
        return []
    query = (
        select(Workflow)
        .where(Workflow.pipeline_id.in_(pipeline_ids))
        .order_by(Workflow.pipeline_id, Workflow.created_at, Workflow.id)
    )
    return list((await session.execute(query)).scalars())


async def workflows_of(session: AsyncSession, pipeline_id: uuid.UUID) -> list[Workflow]:
    query = select(Workflow).where(Workflow.pipeline_id == pipeline_id).order_by(Workflow.created_at, Workflow.id)
    return list((await session.execute(query)).scalars())


# -- jobs -----------------------------------------------------------------------------------------


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    return await session.get(Job, job_id)


async def jobs_of_pipeline(session: AsyncSession, pipeline_id: uuid.UUID) -> list[Job]:
    """Every job of every workflow of the pipeline, in each workflow's order (``jobs_of``)."""
    query = select(Job).where(Job.pipeline_id == pipeline_id).order_by(Job.workflow_id, Job.created_at, Job.name)
    return list((await session.execute(query)).scalars())


async def jobs_of(session: AsyncSession, workflow_id: uuid.UUID) -> list[Job]:
    query = (
        select(Job)
        .where(Job.workflow_id == workflow_id)
        .order_by(Job.created_at, Job.name)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(query)).scalars())


async def lock_job(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """The job, locked and re-read: the last of its tasks to end is the one that settles it."""
    query = select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def job_by_number(session: AsyncSession, project_id: uuid.UUID, number: int) -> Job | None:
    """The job holding a number: the latest, when a rerun reused the number's job."""
    if number not in NUMBER_RANGE:
        return None
    query = (
        select(Job).where(Job.project_id == project_id, Job.number == number).order_by(Job.created_at.desc()).limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


# -- tasks ----------------------------------------------------------------------------------------


async def claim_task(
    session: AsyncSession, resource_class: str, runner_name: str, lease: timedelta, token_hash: str
) -> Task | None:
    """Take the oldest queued task of a class in one statement: PostgreSQL skips rows another
    transaction holds (``FOR UPDATE SKIP LOCKED``); SQLite has one writer, which is the lock."""
    now = utcnow()
    oldest = (
        select(Task.id)
        .where(Task.resource_class == resource_class, Task.status == "queued")
        .order_by(Task.created_at, Task.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Task)
        .where(Task.id == oldest, Task.status == "queued")
        .values(
            status="running",
            runner_name=runner_name,
            claimed_at=now,
            lease_expires_at=now + lease,
            token_hash=token_hash,
        )
        .returning(Task.id)
    )
    claimed = (await session.execute(statement)).scalar_one_or_none()
    if claimed is None:
        return None
    return await session.get(Task, claimed, populate_existing=True)


async def get_task(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    return await session.get(Task, task_id)


async def lock_task(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    query = select(Task).where(Task.id == task_id).with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def task_by_token(session: AsyncSession, token_hash: str) -> Task | None:
    query = select(Task).where(Task.token_hash == token_hash)
    return (await session.execute(query)).scalar_one_or_none()


async def tasks_of(session: AsyncSession, job_ids: Sequence[uuid.UUID]) -> list[Task]:
    if not job_ids:
        return []
    query = (
        select(Task)
        .where(Task.job_id.in_(job_ids))
        .order_by(Task.parallel_index)
        .execution_options(populate_existing=True)
    )
    return list((await session.execute(query)).scalars())


async def expired_tasks(session: AsyncSession, now: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(task id, workflow id) of running tasks whose lease has expired."""
    query = (
        select(Task.id, Job.workflow_id)
        .join(Job, Job.id == Task.job_id)
        .where(Task.status == "running", Task.lease_expires_at < now)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def count_tasks(session: AsyncSession, resource_class: str, status: str) -> int:
    query = select(func.count()).where(Task.resource_class == resource_class, Task.status == status)
    return (await session.execute(query)).scalar_one()


# -- steps ----------------------------------------------------------------------------------------


async def save_step(session: AsyncSession, task_id: uuid.UUID, index: int, values: dict[str, Any]) -> None:
    table = StepRun.__table__
    statement = insert_for(session, table).values(task_id=task_id, step_index=index, **values)  # type: ignore[arg-type]
    await session.execute(statement.on_conflict_do_update(index_elements=["task_id", "step_index"], set_=values))


async def append_output(session: AsyncSession, task_id: uuid.UUID, index: int, data: bytes) -> None:
    session.add(StepOutput(task_id=task_id, step_index=index, data=data, created_at=utcnow()))
    await session.flush()


async def charge_output(session: AsyncSession, task_id: uuid.UUID, size: int, limit: int) -> bool:
    """Count ``size`` more bytes of the task's output, if that keeps it within ``limit``."""
    charged = await session.execute(
        update(Task)
        .where(Task.id == task_id, Task.output_bytes + size <= limit)
        .values(output_bytes=Task.output_bytes + size)
    )
    return bool(charged.rowcount)  # type: ignore[attr-defined]


async def mark_output_full(session: AsyncSession, task_id: uuid.UUID, limit: int) -> bool:
    """True once: the first time the task's output is found past ``limit``."""
    marked = await session.execute(
        update(Task).where(Task.id == task_id, Task.output_bytes <= limit).values(output_bytes=limit + 1)
    )
    return bool(marked.rowcount)  # type: ignore[attr-defined]


async def output_of(session: AsyncSession, task_id: uuid.UUID, index: int) -> bytes:
    query = (
        select(StepOutput.data)
        .where(StepOutput.task_id == task_id, StepOutput.step_index == index)
        .order_by(StepOutput.id)
    )
    return b"".join((await session.execute(query)).scalars())


async def steps_of(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> list[StepRun]:
    """The step events of tasks, by step index."""
    if not task_ids:
        return []
    query = select(StepRun).where(StepRun.task_id.in_(task_ids)).order_by(StepRun.step_index, StepRun.task_id)
    return list((await session.execute(query)).scalars())


async def steps_with_output(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> set[tuple[uuid.UUID, int]]:
    """(task id, step index) of the steps of tasks that have any output."""
    if not task_ids:
        return set()
    query = (
        select(StepOutput.task_id, StepOutput.step_index)
        .where(StepOutput.task_id.in_(task_ids))
        .group_by(StepOutput.task_id, StepOutput.step_index)
    )
    return {(row[0], row[1]) for row in (await session.execute(query)).all()}


# -- runner tokens --------------------------------------------------------------------------------


async def runner_token(session: AsyncSession, token_hash: str) -> RunnerToken | None:
    query = select(RunnerToken).where(RunnerToken.token_hash == token_hash)
    return (await session.execute(query)).scalar_one_or_none()


async def mark_runner_seen(session: AsyncSession, token_id: uuid.UUID) -> None:
    await session.execute(update(RunnerToken).where(RunnerToken.id == token_id).values(last_seen_at=utcnow()))


async def runner_last_seen(session: AsyncSession, resource_class: str) -> tuple[int, datetime | None]:
    """How many tokens a class has, and when any of its runners last asked for work."""
    query = select(func.count(), func.max(RunnerToken.last_seen_at)).where(RunnerToken.resource_class == resource_class)
    count, seen = (await session.execute(query)).one()
    return int(count), seen
