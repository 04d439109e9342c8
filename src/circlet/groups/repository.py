"""Queries on groups."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Group


async def get_group(session: AsyncSession, group_id: uuid.UUID) -> Group | None:
    return await session.get(Group, group_id)
