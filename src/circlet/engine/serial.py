"""Serial groups: one holder per (organization, key), and the ready jobs waiting for it, oldest first.

Race-free on both backends. Acquiring inserts the holder row (``ON CONFLICT DO NOTHING``): on
PostgreSQL a concurrent insert or delete of the same key makes it wait for that transaction, so
two transactions never both acquire. A job that finds the group held locks the holder row
(``FOR UPDATE``) before it queues up as a waiter, so a release (which deletes that row) either
happens before (the insert is retried and succeeds or finds the new holder) or after (it sees the
waiter): no waiter is ever left behind. Releasing deletes the holder and hands the group to the
oldest waiter in the same transaction. On SQLite the single writer serialises all of this.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import SerialGroupHolder, SerialGroupWaiter
from circlet.db.types import utcnow

ACQUIRE_ATTEMPTS = 10


@dataclass(frozen=True)
class Hold:
    org_id: uuid.UUID
    key: str
    job_id: uuid.UUID


async def acquire(
    session: AsyncSession, org_id: uuid.UUID, key: str, job_id: uuid.UUID, workflow_id: uuid.UUID
) -> bool:
    """Take the group for the job (True), or queue the job as a waiter (False)."""
    table = SerialGroupHolder.__table__
    for _ in range(ACQUIRE_ATTEMPTS):
        inserted = (
            await session.execute(
                insert_for(session, table)  # type: ignore[arg-type]
                .values(org_id=org_id, key=key, job_id=job_id, workflow_id=workflow_id, acquired_at=utcnow())
                .on_conflict_do_nothing(index_elements=["org_id", "key"])
                .returning(table.c.job_id)
            )
        ).scalar_one_or_none()
        if inserted is not None:
            return True
        holder = (
            await session.execute(
                select(SerialGroupHolder.job_id)
                .where(SerialGroupHolder.org_id == org_id, SerialGroupHolder.key == key)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if holder == job_id:
            return True
        if holder is not None:
            await session.execute(
                insert_for(session, SerialGroupWaiter.__table__)  # type: ignore[arg-type]
                .values(org_id=org_id, key=key, job_id=job_id, workflow_id=workflow_id, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["job_id"])
            )
            return False
        # Released between the insert and the lock: try again.
    raise RuntimeError(f"could not acquire or wait for serial group {key!r}")


async def release(session: AsyncSession, hold: Hold) -> uuid.UUID | None:
    """Free the group the job holds and hand it to the oldest waiter: that job's id (it now holds
    the group and must be started), or None."""
    freed = (
        await session.execute(
            delete(SerialGroupHolder)
            .where(
                SerialGroupHolder.org_id == hold.org_id,
                SerialGroupHolder.key == hold.key,
                SerialGroupHolder.job_id == hold.job_id,
            )
            .returning(SerialGroupHolder.job_id)
        )
    ).scalar_one_or_none()
    if freed is None:
        return None
    while True:
        candidates = (
            (
                await session.execute(
                    select(SerialGroupWaiter.id)
                    .where(SerialGroupWaiter.org_id == hold.org_id, SerialGroupWaiter.key == hold.key)
                    .order_by(SerialGroupWaiter.id)
                    .limit(5)
                )
            )
            .scalars()
            .all()
        )
        if not candidates:
            return None
        for candidate in candidates:
            # A waiter canceled meanwhile is gone: its delete returns nothing, try the next.
            taken = (
                await session.execute(
                    delete(SerialGroupWaiter)
                    .where(SerialGroupWaiter.id == candidate)
                    .returning(SerialGroupWaiter.job_id, SerialGroupWaiter.workflow_id)
                )
            ).one_or_none()
            if taken is None:
                continue
            await session.execute(
                insert_for(session, SerialGroupHolder.__table__).values(  # type: ignore[arg-type]
                    org_id=hold.org_id, key=hold.key, job_id=taken[0], workflow_id=taken[1], acquired_at=utcnow()
                )
            )
            return uuid.UUID(str(taken[0]))


async def holds_of_workflow(session: AsyncSession, workflow_id: uuid.UUID) -> list[Hold]:
    query = select(SerialGroupHolder.org_id, SerialGroupHolder.key, SerialGroupHolder.job_id).where(
        SerialGroupHolder.workflow_id == workflow_id
    )
    return [Hold(row[0], row[1], row[2]) for row in (await session.execute(query)).all()]


async def forget_waiter(session: AsyncSession, job_id: uuid.UUID) -> None:
    await session.execute(delete(SerialGroupWaiter).where(SerialGroupWaiter.job_id == job_id))
