"""Queries on the audit log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import AuditEvent
from circlet.db.types import utcnow


async def record(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None,
    actor: str,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str,
    org_id: uuid.UUID | None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEvent(
            at=utcnow(),
            actor_id=actor_id,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            org_id=org_id,
            details=details or {},
        )
    )


async def events(session: AsyncSession, *, org_id: uuid.UUID | None = None) -> AsyncIterator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if org_id is not None:
        query = query.where(AuditEvent.org_id == org_id)
    for event in (await session.execute(query)).scalars():
        yield event
