"""Queries on runner resource classes, runner tokens and runner instances."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import Organization, RunnerInstance, RunnerResourceClass, RunnerToken, Task
from circlet.db.types import utcnow

# -- resource classes -----------------------------------------------------------------------------


async def add_class(session: AsyncSession, org_id: uuid.UUID, name: str, description: str) -> RunnerResourceClass:
    row = RunnerResourceClass(
        id=uuid.uuid4(),
        org_id=org_id,
        name=name,
        namespace=name.split("/", 1)[0],
        description=description,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


async def class_by_name(session: AsyncSession, name: str) -> RunnerResourceClass | None:
    query = select(RunnerResourceClass).where(RunnerResourceClass.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def get_class(session: AsyncSession, class_id: uuid.UUID) -> RunnerResourceClass | None:
    return await session.get(RunnerResourceClass, class_id)


async def namespace_owner(session: AsyncSession, namespace: str) -> uuid.UUID | None:
    """The organization whose classes are in this namespace, if any has one."""
    query = select(RunnerResourceClass.org_id).where(RunnerResourceClass.namespace == namespace).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def classes_of(session: AsyncSession, org_id: uuid.UUID) -> list[RunnerResourceClass]:
    query = select(RunnerResourceClass).where(RunnerResourceClass.org_id == org_id).order_by(RunnerResourceClass.name)
    return list((await session.execute(query)).scalars())


async def all_classes(session: AsyncSession) -> list[RunnerResourceClass]:
    return list((await session.execute(select(RunnerResourceClass).order_by(RunnerResourceClass.name))).scalars())


async def delete_class(session: AsyncSession, class_id: uuid.UUID) -> None:
    # Tokens and instances go with it (ON DELETE CASCADE), stated here too for SQLite files whose
    # foreign keys were created before the cascade existed.
    await session.execute(delete(RunnerToken).where(RunnerToken.resource_class_id == class_id))
    await session.execute(delete(RunnerInstance).where(RunnerInstance.resource_class_id == class_id))
    await session.execute(delete(RunnerResourceClass).where(RunnerResourceClass.id == class_id))


async def orgs_named(session: AsyncSession, name_key: str) -> list[Organization]:
    """Organizations whose name (case-insensitive) is ``name_key``, oldest first."""
    query = select(Organization).where(Organization.name_key == name_key).order_by(Organization.created_at)
    return list((await session.execute(query)).scalars())


async def queued_job_ids(session: AsyncSession, resource_class: str) -> list[uuid.UUID]:
    query = select(Task.job_id).where(Task.resource_class == resource_class, Task.status == "queued").distinct()
    return list((await session.execute(query)).scalars())


# -- tokens ---------------------------------------------------------------------------------------


async def add_token(
    session: AsyncSession,
    resource_class: str,
    hashed: str,
    nickname: str,
    resource_class_id: uuid.UUID | None,
    org_id: uuid.UUID | None,
) -> RunnerToken:
    row = RunnerToken(
        id=uuid.uuid4(),
        resource_class=resource_class,
        resource_class_id=resource_class_id,
        org_id=org_id,
        token_hash=hashed,
        label=nickname,
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


async def get_token(session: AsyncSession, token_id: uuid.UUID) -> RunnerToken | None:
    return await session.get(RunnerToken, token_id, populate_existing=True)


async def tokens_of_class(session: AsyncSession, resource_class: str) -> list[RunnerToken]:
    query = select(RunnerToken).where(RunnerToken.resource_class == resource_class).order_by(RunnerToken.created_at)
    return list((await session.execute(query)).scalars())


async def tokens_where(
    session: AsyncSession, org_id: uuid.UUID | None, resource_class: str | None
) -> list[RunnerToken]:
    """Every token, or an organization's, or a class's (the operator's listing)."""
    query = select(RunnerToken).order_by(RunnerToken.resource_class, RunnerToken.created_at)
    if org_id is not None:
        query = query.where(RunnerToken.org_id == org_id)
    if resource_class is not None:
        query = query.where(RunnerToken.resource_class == resource_class)
    return list((await session.execute(query)).scalars())


async def delete_token(session: AsyncSession, token_id: uuid.UUID) -> None:
    await session.execute(update(RunnerInstance).where(RunnerInstance.token_id == token_id).values(token_id=None))
    await session.execute(delete(RunnerToken).where(RunnerToken.id == token_id))


# -- instances ------------------------------------------------------------------------------------


async def record_instance(
    session: AsyncSession, token: RunnerToken, name: str, version: str, ip: str, *, claimed: bool
) -> None:
    """Insert or refresh the instance (class, name) a runner claims as."""
    now = utcnow()
    changes: dict[str, object] = {"token_id": token.id, "version": version, "ip": ip, "last_seen_at": now}
    if claimed:
        changes["last_used_at"] = now
    row = {
        "id": uuid.uuid4(),
        "resource_class": token.resource_class,
        "resource_class_id": token.resource_class_id,
        "org_id": token.org_id,
        "name": name,
        "first_seen_at": now,
        "last_used_at": None,
        **changes,
    }
    statement = insert_for(session, RunnerInstance.__table__).values(**row)  # type: ignore[arg-type]
    await session.execute(statement.on_conflict_do_update(index_elements=["resource_class", "name"], set_=changes))


async def instances(
    session: AsyncSession, *, org_id: uuid.UUID | None = None, resource_class: str | None = None
) -> list[RunnerInstance]:
    query = select(RunnerInstance).order_by(RunnerInstance.resource_class, RunnerInstance.name)
    if org_id is not None:
        query = query.where(RunnerInstance.org_id == org_id)
    if resource_class is not None:
        query = query.where(RunnerInstance.resource_class == resource_class)
    return list((await session.execute(query)).scalars())
