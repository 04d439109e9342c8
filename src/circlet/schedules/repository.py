"""Queries on schedules, their claimed fire times, and the built-in system actor."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import Schedule, ScheduleFire, User
from circlet.db.types import utcnow

# The actor of `attribution-actor: system` schedules: one user row, made the first time it is needed.
SYSTEM_ACTOR_ID = uuid.UUID("5c4ed01e-0000-4000-8000-5c4ed01ed000")
SYSTEM_ACTOR_LOGIN = "system-actor"
SYSTEM_ACTOR_NAME = "Scheduled"


class DuplicateSchedule(Exception):
    pass


async def get_schedule(session: AsyncSession, schedule_id: uuid.UUID) -> Schedule | None:
    return await session.get(Schedule, schedule_id)


async def find_schedule_by_name(session: AsyncSession, project_id: uuid.UUID, name: str) -> Schedule | None:
    query = select(Schedule).where(Schedule.project_id == project_id, Schedule.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def list_schedules(
    session: AsyncSession, project_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Schedule]:
    query = select(Schedule).where(Schedule.project_id == project_id)
    if after is not None:
        query = query.where(tuple_(Schedule.created_at, Schedule.id) > tuple_(*after))
    query = query.order_by(Schedule.created_at, Schedule.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def add_schedule(session: AsyncSession, schedule: Schedule) -> None:
    session.add(schedule)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateSchedule(schedule.name) from exc


async def save_schedule(session: AsyncSession, schedule: Schedule) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateSchedule(schedule.name) from exc


async def delete_schedule(session: AsyncSession, schedule_id: uuid.UUID) -> None:
    await session.execute(delete(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id))
    await session.execute(delete(Schedule).where(Schedule.id == schedule_id))


async def ensure_system_actor(session: AsyncSession) -> User | None:
    """The system actor's user row, made if missing; None if a person already has its login."""
    users = User.metadata.tables[User.__tablename__]
    statement = insert_for(session, users).values(
        id=SYSTEM_ACTOR_ID,
        login=SYSTEM_ACTOR_LOGIN,
        login_key=SYSTEM_ACTOR_LOGIN,
        name=SYSTEM_ACTOR_NAME,
        may_create_orgs=False,
        created_at=utcnow(),
    )
    await session.execute(statement.on_conflict_do_nothing())
    return await session.get(User, SYSTEM_ACTOR_ID)


# -- the scheduler ---------------------------------------------------------------------------------


async def earliest_fire_time(session: AsyncSession) -> datetime | None:
    """The smallest ``next_fire_at`` of all schedules: one index lookup, the scheduler's idle query."""
    return (await session.execute(select(func.min(Schedule.next_fire_at)))).scalar_one_or_none()


async def due_schedules(session: AsyncSession, now: datetime, limit: int) -> list[tuple[uuid.UUID, datetime]]:
    """(id, next_fire_at) of the schedules due at ``now``, earliest first."""
    query = (
        select(Schedule.id, Schedule.next_fire_at)
        .where(Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at, Schedule.id)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in await session.execute(query) if row[1] is not None]


async def advance(
    session: AsyncSession, schedule_id: uuid.UUID, expected: datetime, following: datetime | None
) -> bool:
    """Move ``next_fire_at`` from ``expected`` to ``following`` in one statement; False when another
    process (or a change of the schedule) moved it first."""
    statement = (
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_fire_at == expected)
        .values(next_fire_at=following)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def claim_fire(session: AsyncSession, schedule_id: uuid.UUID, fire_at: datetime) -> bool:
    """Record the fire time as taken; False if it already was (its primary key)."""
    fires = ScheduleFire.metadata.tables[ScheduleFire.__tablename__]
    statement = (
        insert_for(session, fires)
        .values(schedule_id=schedule_id, fire_at=fire_at, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(fires.c.schedule_id)
    )
    return (await session.execute(statement)).first() is not None


async def record_fire_pipeline(
    session: AsyncSession, schedule_id: uuid.UUID, fire_at: datetime, pipeline_id: uuid.UUID
) -> None:
    await session.execute(
        update(ScheduleFire)
        .where(ScheduleFire.schedule_id == schedule_id, ScheduleFire.fire_at == fire_at)
        .values(pipeline_id=pipeline_id)
    )


async def fires_of(session: AsyncSession, schedule_id: uuid.UUID) -> list[ScheduleFire]:
    query = select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id).order_by(ScheduleFire.fire_at)
    return list((await session.execute(query)).scalars())


async def delete_fires_before(session: AsyncSession, moment: datetime) -> int:
    result = await session.execute(delete(ScheduleFire).where(ScheduleFire.fire_at < moment))
    return int(getattr(result, "rowcount", 0) or 0)
