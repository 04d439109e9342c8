"""Queries on organizations and memberships."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Membership, Organization
from circlet.db.types import utcnow
from circlet.orgs.slugs import OrgSlug


async def get_org(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await session.get(Organization, org_id)


async def find_org_by_slug(session: AsyncSession, slug: OrgSlug) -> Organization | None:
    if slug.org_id is not None:
        return await session.get(Organization, slug.org_id)
    assert slug.name is not None
    return (
        await session.execute(
            select(Organization).where(
                Organization.vcs_type == slug.vcs_type, Organization.name_key == slug.name.lower()
            )
        )
    ).scalar_one_or_none()


async def add_org(session: AsyncSession, name: str, vcs_type: str) -> Organization:
    org = Organization(id=uuid.uuid4(), name=name, name_key=name.lower(), vcs_type=vcs_type, created_at=utcnow())
    session.add(org)
    await session.flush()
    return org


async def set_membership(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    existing = await session.get(Membership, (org_id, user_id))
    if existing is None:
        session.add(Membership(org_id=org_id, user_id=user_id, role=role, created_at=utcnow()))
    else:
        existing.role = role
    await session.flush()
