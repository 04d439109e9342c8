"""Queries on contexts, their environment variables and their restrictions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import PLAIN, STAMP, TIME, UUID, Executor, RawQuery, convert_value, fetch_all
from circlet.db.models import Context, ContextEnvVar, ContextRestriction
from circlet.db.types import utcnow


class DuplicateName(Exception):
    pass


@dataclass(frozen=True)
class EnvVarStamp:
    name: str
    created_at: datetime
    updated_at: datetime


# The context list is the hottest query there is: fixed SQL run on the driver's connection
# (circlet.db.dialect.fetch_all), rather than built and run by SQLAlchemy, which cost several times what
# the database takes to answer it. A page is 21 rows of (id, name, created_at), keyset-ordered on the
# (org_id, created_at, id) index.
# created_at twice: as the response's text (STAMP: no datetime made on SQLite), and as the driver
# returns it, made a datetime only for the page's last row (``position_time``), whose token needs it
# to the microsecond. Converting 21 times both ways was a fifth of the request.
_CONTEXT_PAGE = RawQuery(
    "SELECT contexts.id, contexts.name, contexts.created_at, contexts.created_at FROM contexts "
    "WHERE contexts.org_id = ? ORDER BY contexts.created_at, contexts.id LIMIT ?",
    params=(UUID, PLAIN),
    columns=(UUID, PLAIN, STAMP, PLAIN),
)
_CONTEXT_PAGE_AFTER = RawQuery(
    "SELECT contexts.id, contexts.name, contexts.created_at, contexts.created_at FROM contexts "
    "WHERE contexts.org_id = ? AND (contexts.created_at, contexts.id) > (?, ?) "
    "ORDER BY contexts.created_at, contexts.id LIMIT ?",
    params=(UUID, TIME, UUID, PLAIN),
    columns=(UUID, PLAIN, STAMP, PLAIN),
)


async def list_contexts(
    session: AsyncSession, org_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[tuple[uuid.UUID, str, str, Any]]:
    """(id, name, created_at as the API writes it, created_at for ``position_time``) of up to ``limit``
    contexts after ``after``, in keyset order."""
    if after is None:
        return await fetch_all(session, _CONTEXT_PAGE, org_id, limit)
    return await fetch_all(session, _CONTEXT_PAGE_AFTER, org_id, after[0], after[1], limit)


def position_time(session: AsyncSession, created_at: Any) -> datetime:
    """The aware UTC time of a row's created_at as ``list_contexts`` returned it (its last column)."""
    value: datetime = convert_value(session, TIME, created_at)
    return value


_CONTEXT_ORG = RawQuery("SELECT contexts.org_id FROM contexts WHERE contexts.id = ?", params=(UUID,), columns=(UUID,))


async def context_org(session: Executor, context_id: uuid.UUID) -> uuid.UUID | None:
    """The organization that owns the context, if there is such a context: the one read a variable's
    write needs (fixed SQL, see ``list_contexts``)."""
    rows = await fetch_all(session, _CONTEXT_ORG, context_id)
    return rows[0][0] if rows else None


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
) -> list[Row[str, datetime, datetime]]:
    query = select(ContextEnvVar.name, ContextEnvVar.created_at, ContextEnvVar.updated_at).where(
        ContextEnvVar.context_id == context_id
    )
    if after is not None:
        query = query.where(ContextEnvVar.name > after)
    query = query.order_by(ContextEnvVar.name).limit(limit)
    return list((await session.execute(query)).all())


_ENV_VAR_COUNT = RawQuery(
    "SELECT count(*) FROM context_env_vars WHERE context_env_vars.context_id = ?", params=(UUID,), columns=(PLAIN,)
)


async def count_env_vars(session: Executor, context_id: uuid.UUID) -> int:
    rows = await fetch_all(session, _ENV_VAR_COUNT, context_id)
    return int(rows[0][0])


# Writing a variable is the other hot path: its statements too are fixed SQL on the driver's
# connection. The upsert is spelled the same on SQLite and PostgreSQL.
_ENV_VAR_EXISTS = RawQuery(
    "SELECT 1 FROM context_env_vars WHERE context_env_vars.context_id = ? AND context_env_vars.name = ?",
    params=(UUID, PLAIN),
    columns=(PLAIN,),
)
_ENV_VAR_UPSERT = RawQuery(
    "INSERT INTO context_env_vars (context_id, name, key_id, ciphertext, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (context_id, name) DO UPDATE SET key_id = excluded.key_id, "
    "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at "
    "RETURNING context_env_vars.created_at, context_env_vars.updated_at",
    params=(UUID, PLAIN, PLAIN, PLAIN, TIME, TIME),
    columns=(TIME, TIME),
)


async def env_var_exists(session: Executor, context_id: uuid.UUID, name: str) -> bool:
    return bool(await fetch_all(session, _ENV_VAR_EXISTS, context_id, name))


async def upsert_env_var(
    session: Executor, context_id: uuid.UUID, name: str, key_id: str, ciphertext: bytes
) -> EnvVarStamp:
    """Create or replace in one statement: concurrent PUTs leave one consistent value, and
    ``created_at`` survives updates while ``updated_at`` moves."""
    now = utcnow()
    rows = await fetch_all(session, _ENV_VAR_UPSERT, context_id, name, key_id, ciphertext, now, now)
    created_at, updated_at = rows[0]
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
