"""Queries on contexts, their environment variables and their restrictions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Uuid, bindparam, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import Context, ContextEnvVar, ContextRestriction
from circlet.db.types import UTCDateTime, utcnow


class DuplicateName(Exception):
    pass


@dataclass(frozen=True)
class EnvVarStamp:
    name: str
    created_at: datetime
    updated_at: datetime


# The context list is the hottest query there is; its two statements are built once, with bound
# parameters, and run as Core on the session's connection: building a select and running it through
# the ORM cost several times what SQLite takes to answer it.
_contexts = Context.__table__.c
_CONTEXT_PAGE = (
    select(_contexts.id, _contexts.name, _contexts.created_at)
    .where(_contexts.org_id == bindparam("org_id"))
    .order_by(_contexts.created_at, _contexts.id)
    .limit(bindparam("limit"))
)
_CONTEXT_PAGE_AFTER = _CONTEXT_PAGE.where(
    tuple_(_contexts.created_at, _contexts.id)
    > tuple_(bindparam("after_created", type_=UTCDateTime), bindparam("after_id", type_=Uuid))
)


async def list_contexts(
    session: AsyncSession, org_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Row[tuple[uuid.UUID, str, datetime]]]:
    connection = await session.connection()
    if after is None:
        result = await connection.execute(_CONTEXT_PAGE, {"org_id": org_id, "limit": limit})
    else:
        params = {"org_id": org_id, "limit": limit, "after_created": after[0], "after_id": after[1]}
        result = await connection.execute(_CONTEXT_PAGE_AFTER, params)
    return list(result.all())


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


# Writing a variable is the other hot path: its statements too are built once (the upsert once
# per dialect) and run as Core on the session's connection.
_env_vars = ContextEnvVar.__table__
_ENV_VAR_EXISTS = select(_env_vars.c.name).where(
    _env_vars.c.context_id == bindparam("context_id"), _env_vars.c.name == bindparam("name")
)
_env_var_upserts: dict[str, Any] = {}


async def env_var_exists(session: AsyncSession, context_id: uuid.UUID, name: str) -> bool:
    connection = await session.connection()
    result = await connection.execute(_ENV_VAR_EXISTS, {"context_id": context_id, "name": name})
    return result.first() is not None


def _env_var_upsert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect not in _env_var_upserts:
        params = {column.name: bindparam(column.name, type_=column.type) for column in _env_vars.c}
        _env_var_upserts[dialect] = (
            insert_for(session, ContextEnvVar.__table__)
            .values(params)
            .on_conflict_do_update(
                index_elements=[_env_vars.c.context_id, _env_vars.c.name],
                set_={name: params[name] for name in ("key_id", "ciphertext", "updated_at")},
            )
            .returning(_env_vars.c.created_at, _env_vars.c.updated_at)
        )
    return _env_var_upserts[dialect]


async def upsert_env_var(
    session: AsyncSession, context_id: uuid.UUID, name: str, key_id: str, ciphertext: bytes
) -> EnvVarStamp:
    """Create or replace in one statement: concurrent PUTs leave one consistent value, and
    ``created_at`` survives updates while ``updated_at`` moves."""
    now = utcnow()
    params = {
        "context_id": context_id,
        "name": name,
        "key_id": key_id,
        "ciphertext": ciphertext,
        "created_at": now,
        "updated_at": now,
    }
    connection = await session.connection()
    created_at, updated_at = (await connection.execute(_env_var_upsert(session), params)).one()
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
