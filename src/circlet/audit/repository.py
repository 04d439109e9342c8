"""Queries on the audit log."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import PLAIN, TIME, UUID, Executor, RawQuery, execute
from circlet.db.models import AuditEvent
from circlet.db.types import utcnow

# Every write records an event: a fixed INSERT on the session's connection (circlet.db.dialect) is a
# fraction of the cost of an ORM object flushed at commit. The event is written at once, in the
# caller's transaction, so it commits or rolls back with the change it records; ``details`` is JSON
# text exactly as SQLAlchemy's JSON type writes it (``json.dumps``).
_INSERT = RawQuery(
    "INSERT INTO audit_events (at, actor_id, actor, action, target_type, target_id, org_id, details) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    params=(TIME, UUID, PLAIN, PLAIN, PLAIN, PLAIN, UUID, PLAIN),
    columns=(),
)


async def record(
    session: Executor,
    *,
    actor_id: uuid.UUID | None,
    actor: str,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str,
    org_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    await execute(
        session,
        _INSERT,
        utcnow(),
        actor_id,
        actor,
        action,
        target_type,
        str(target_id),
        org_id,
        json.dumps(details or {}),
    )


async def events(session: AsyncSession, *, org_id: uuid.UUID | None = None) -> AsyncIterator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if org_id is not None:
        query = query.where(AuditEvent.org_id == org_id)
    for event in (await session.execute(query)).scalars():
        yield event
