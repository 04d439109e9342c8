"""Queries on the projects pipelines are listed over."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Project


async def project_ids_of_orgs(session: AsyncSession, org_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    query = select(Project.id).where(Project.org_id.in_(org_ids))
    return list((await session.execute(query)).scalars())
