"""Queries of forge hooks, polled projects and custom webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import (
    HookDelivery,
    Membership,
    Pipeline,
    ProjectHookSecret,
    ProjectPoll,
    TriggerWebhookSecret,
    User,
    Workflow,
)


async def get_hook_secret(session: AsyncSession, project_id: uuid.UUID) -> ProjectHookSecret | None:
    return await session.get(ProjectHookSecret, project_id)


async def save_hook_secret(
    session: AsyncSession, project_id: uuid.UUID, key_id: str, ciphertext: bytes, now: datetime
) -> None:
    table = ProjectHookSecret.metadata.tables[ProjectHookSecret.__tablename__]
    values = {"key_id": key_id, "ciphertext": ciphertext}
    statement = insert_for(session, table).values(project_id=project_id, created_at=now, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["project_id"], set_=values))


async def record_delivery(session: AsyncSession, project_id: uuid.UUID, delivery: str, now: datetime) -> bool:
    """Claim the delivery in one statement: False if it was already claimed (by a redelivery, or by
    another server polling the same update)."""
    table = HookDelivery.metadata.tables[HookDelivery.__tablename__]
    statement = (
        insert_for(session, table)
        .values(id=uuid.uuid4(), project_id=project_id, delivery=delivery, received_at=now)
        .on_conflict_do_nothing(index_elements=["project_id", "delivery"])
        .returning(table.c.id)
    )
    return (await session.execute(statement)).first() is not None


async def forget_deliveries(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(HookDelivery).where(HookDelivery.received_at < before))


async def member_by_login(session: AsyncSession, login: str, org_id: uuid.UUID) -> uuid.UUID | None:
    """The user with ``login``, if they belong to the organization."""
    query = (
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(User.login_key == login.lower(), Membership.org_id == org_id)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def redundant_workflows(
    session: AsyncSession, project_id: uuid.UUID, branch: str, newer: Collection[uuid.UUID], final: Collection[str]
) -> list[Workflow]:
    """The unfinished workflows of the project's other pipelines on ``branch``."""
    query = (
        select(Workflow)
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(
            Pipeline.project_id == project_id,
            Pipeline.branch == branch,
            Pipeline.id.not_in(newer),
            Workflow.status.not_in(final),
        )
        .order_by(Workflow.created_at)
    )
    return list((await session.execute(query)).scalars())


# -- polled projects ------------------------------------------------------------------------------


async def get_poll(session: AsyncSession, project_id: uuid.UUID) -> ProjectPoll | None:
    return await session.get(ProjectPoll, project_id)


async def set_poll(session: AsyncSession, project_id: uuid.UUID, every_seconds: int | None, now: datetime) -> None:
    await session.execute(delete(ProjectPoll).where(ProjectPoll.project_id == project_id))
    if every_seconds is not None:
        session.add(ProjectPoll(project_id=project_id, every_seconds=every_seconds, next_poll_at=now, refs=None))
        await session.flush()


async def claim_due_poll(session: AsyncSession, now: datetime, lease: timedelta) -> ProjectPoll | None:
    """The project most overdue for a poll, moved forward by ``lease`` in one statement (so no other
    server takes it meanwhile); None when none is due."""
    due = (
        select(ProjectPoll.project_id)
        .where(ProjectPoll.next_poll_at <= now)
        .order_by(ProjectPoll.next_poll_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(ProjectPoll)
        .where(ProjectPoll.project_id == due, ProjectPoll.next_poll_at <= now)
        .values(next_poll_at=now + lease)
        .returning(ProjectPoll.project_id)
    )
    project_id = (await session.execute(statement)).scalar_one_or_none()
    if project_id is None:
        return None
    return await session.get(ProjectPoll, project_id, populate_existing=True)


async def finish_poll(
    session: AsyncSession, project_id: uuid.UUID, refs: dict[str, str] | None, next_poll_at: datetime
) -> None:
    values: dict[str, object] = {"next_poll_at": next_poll_at}
    if refs is not None:
        values["refs"] = refs
    await session.execute(update(ProjectPoll).where(ProjectPoll.project_id == project_id).values(**values))


async def secrets_not_sealed_with(
    session: AsyncSession, key_id: str, limit: int
) -> list[ProjectHookSecret | TriggerWebhookSecret]:
    """Forge and custom webhook secrets sealed under another key than ``key_id`` (key rotation)."""
    forge = select(ProjectHookSecret).where(ProjectHookSecret.key_id != key_id).limit(limit)
    found: list[ProjectHookSecret | TriggerWebhookSecret] = list((await session.execute(forge)).scalars())
    if len(found) < limit:
        custom = select(TriggerWebhookSecret).where(TriggerWebhookSecret.key_id != key_id).limit(limit - len(found))
        found.extend((await session.execute(custom)).scalars())
    return found
