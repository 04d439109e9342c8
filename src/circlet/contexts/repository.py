"""Queries on contexts, their environment variables and their restrictions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import Context, ContextEnvVar, ContextRestriction
from circlet.db.types import utcnow


class DuplicateName(Exception):
    pass


@dataclass(frozen=True)
class EnvVarStamp:
    name: str
    created_at: datetime
    updated_at: datetime


async def list_contexts(
    session: AsyncSession, org_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Row[tuple[uuid.UUID, str, datetime]]]:
    query = select(Context.id, Context.name, Context.created_at).where(Context.org_id == org_id)
    if after is not None:
        query = query.where(tuple_(Context.created_at, Context.id) > tuple_(*after))
    query = query.order_by(Context.created_at, Context.id).limit(limit)
    return list((await session.execute(query)).all())


async def get_context(session: AsyncSession, context_id: uuid.UUID) -> Context | None:
    return await session.get(Context, context_id)


async def count_contexts(session: AsyncSession, org_id: uuid.UUID) -> int:
    return (await session.execute(select(func.count()).where(Context.org_id == org_id))).scalar_one()


async def add_context(session: AsyncSession, org_id: uuid.UUID, name: str) -> Context:
    context = Context(id=uuid.uuid4(), org_id=org_id, name=name, created_at=utcnow())
    session.add(context)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateName(name) from exc
    return context


async def find_context_by_name(session: AsyncSession, org_id: uuid.UUID, name: str) -> Context | None:
    query = select(Context).where(Context.org_id == org_id, Context.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def delete_context(session: AsyncSession, context_id: uuid.UUID) -> None:
    # Children first: SQLite enforces ON DELETE CASCADE only with foreign_keys on, and we do not
    # want correctness to hang on a pragma.
    await session.execute(delete(ContextEnvVar).where(ContextEnvVar.context_id == context_id))
    await session.execute(delete(ContextRestriction).where(ContextRestriction.context_id == context_id))
    await session.execute(delete(Context).where(Context.id == context_id))


async def list_env_vars(
    session: AsyncSession, context_id: uuid.UUID, after: str | None, limit: int
) -> list[Row[tuple[str, datetime, datetime]]]:
    query = select(ContextEnvVar.name, ContextEnvVar.created_at, ContextEnvVar.updated_at).where(
        ContextEnvVar.context_id == context_id
    )
    if after is not None:
        query = query.where(ContextEnvVar.name > after)
    query = query.order_by(ContextEnvVar.name).limit(limit)
    return list((await session.execute(query)).all())


async def count_env_vars(session: AsyncSession, context_id: uuid.UUID) -> int:
    query = select(func.count()).where(ContextEnvVar.context_id == context_id)
    return (await session.execute(query)).scalar_one()


async def env_var_exists(session: AsyncSession, context_id: uuid.UUID, name: str) -> bool:
    query = select(ContextEnvVar.name).where(ContextEnvVar.context_id == context_id, ContextEnvVar.name == name)
    return (await session.execute(query)).first() is not None


async def upsert_env_var(
    session: AsyncSession, context_id: uuid.UUID, name: str, key_id: str, ciphertext: bytes
) -> EnvVarStamp:
    """Create or replace in one statement: concurrent PUTs leave one consistent value, and
    ``created_at`` survives updates while ``updated_at`` moves."""
    now = utcnow()
    table = ContextEnvVar.__table__
    statement = insert_for(session, table).values(
        context_id=context_id, name=name, key_id=key_id, ciphertext=ciphertext, created_at=now, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.context_id, table.c.name],
        set_={"key_id": key_id, "ciphertext": ciphertext, "updated_at": now},
    ).returning(table.c.created_at, table.c.updated_at)
    created_at, updated_at = (await session.execute(statement)).one()
    return EnvVarStamp(name, created_at, updated_at)


async def delete_env_var(session: AsyncSession, context_id: uuid.UUID, name: str) -> bool:
    result = await session.execute(
        delete(ContextEnvVar).where(ContextEnvVar.context_id == context_id, ContextEnvVar.name == name)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def sealed_env_vars(session: AsyncSession, context_id: uuid.UUID) -> list[ContextEnvVar]:
    query = select(ContextEnvVar).where(ContextEnvVar.context_id == context_id).order_by(ContextEnvVar.name)
    return list((await session.execute(query)).scalars())


async def env_vars_not_sealed_with(session: AsyncSession, key_id: str, limit: int) -> list[ContextEnvVar]:
    query = select(ContextEnvVar).where(ContextEnvVar.key_id != key_id).limit(limit)
    return list((await session.execute(query)).scalars())


async def list_restrictions(
    session: AsyncSession, context_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[ContextRestriction]:
    query = select(ContextRestriction).where(ContextRestriction.context_id == context_id)
    if after is not None:
        query = query.where(tuple_(ContextRestriction.created_at, ContextRestriction.id) > tuple_(*after))
    query = query.order_by(ContextRestriction.created_at, ContextRestriction.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def add_restriction(
    session: AsyncSession, context_id: uuid.UUID, restriction_type: str, value: str, name: str
) -> ContextRestriction:
    restriction = ContextRestriction(
        id=uuid.uuid4(),
        context_id=context_id,
        restriction_type=restriction_type,
        restriction_value=value,
        name=name,
        created_at=utcnow(),
    )
    session.add(restriction)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateName(value) from exc
    return restriction


async def get_restriction(
    session: AsyncSession, context_id: uuid.UUID, restriction_id: uuid.UUID
) -> ContextRestriction | None:
    restriction = await session.get(ContextRestriction, restriction_id)
    return restriction if restriction is not None and restriction.context_id == context_id else None


async def delete_restriction(session: AsyncSession, restriction_id: uuid.UUID) -> None:
    await session.execute(delete(ContextRestriction).where(ContextRestriction.id == restriction_id))
