"""The queries of the live tail of a step's output: chunks after a cursor, and where the step stands."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import StepOutput, StepRun, Task


@dataclass(frozen=True)
class Chunk:
    id: int
    data: bytes
    created_at: datetime


@dataclass(frozen=True)
class StepState:
    """A task's status and, once the runner reported the step, the step's status and exit code."""

    task_status: str
    step_status: str | None
    exit_code: int | None


async def chunks_after(
    session: AsyncSession, task_id: uuid.UUID, step_index: int, after: int, limit: int
) -> list[Chunk]:
    """The step's output rows with an id above ``after``, oldest first (ids only grow: the cursor)."""
    query = (
        select(StepOutput.id, StepOutput.data, StepOutput.created_at)
        .where(StepOutput.task_id == task_id, StepOutput.step_index == step_index, StepOutput.id > after)
        .order_by(StepOutput.id)
        .limit(limit)
    )
    return [Chunk(row[0], row[1], row[2]) for row in (await session.execute(query)).all()]


async def chunks_up_to(
    session: AsyncSession, task_id: uuid.UUID, step_index: int, cursor: int, limit: int
) -> list[bytes]:
    """The data of the last ``limit`` rows at or below ``cursor``, oldest first."""
    query = (
        select(StepOutput.data)
        .where(StepOutput.task_id == task_id, StepOutput.step_index == step_index, StepOutput.id <= cursor)
        .order_by(StepOutput.id.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(query)).scalars().all()))


async def step_state(session: AsyncSession, task_id: uuid.UUID, step_index: int) -> StepState | None:
    query = (
        select(Task.status, StepRun.status, StepRun.exit_code)
        .select_from(Task)
        .outerjoin(StepRun, (StepRun.task_id == Task.id) & (StepRun.step_index == step_index))
        .where(Task.id == task_id)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else StepState(row[0], row[1], row[2])
