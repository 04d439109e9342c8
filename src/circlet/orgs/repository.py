"""Queries on organizations and memberships."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import (
    CheckoutKey,
    Context,
    ContextEnvVar,
    ContextRestriction,
    Group,
    GroupMember,
    Membership,
    OrbAllowListEntry,
    Organization,
    Project,
    ProjectEnvVar,
    ProjectSettings,
)
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


class DuplicateOrg(Exception):
    pass


async def add_org(session: AsyncSession, name: str, vcs_type: str) -> Organization:
    org = Organization(
        id=uuid.uuid4(),
        name=name,
        name_key=name.lower(),
        vcs_type=vcs_type,
        created_at=utcnow(),
        avatar_url="",
    )
    session.add(org)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateOrg(name) from exc
    return org


async def set_membership(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    existing = await session.get(Membership, (org_id, user_id))
    if existing is None:
        session.add(Membership(org_id=org_id, user_id=user_id, role=role, created_at=utcnow()))
    else:
        existing.role = role
    await session.flush()


async def delete_org(session: AsyncSession, org_id: uuid.UUID) -> list[uuid.UUID]:
    """The organization and everything under it, children first, in the caller's transaction; returns
    the ids of its projects, whose mirrors on disk go once this commits. Explicit deletes rather than
    ON DELETE CASCADE alone, so correctness never hangs on SQLite's foreign-key pragma; tables added
    later are covered by their foreign keys' cascades."""
    project_ids = list((await session.execute(select(Project.id).where(Project.org_id == org_id))).scalars())
    projects = select(Project.id).where(Project.org_id == org_id).scalar_subquery()
    contexts = select(Context.id).where(Context.org_id == org_id).scalar_subquery()
    groups = select(Group.id).where(Group.org_id == org_id).scalar_subquery()
    for statement in (
        delete(ProjectEnvVar).where(ProjectEnvVar.project_id.in_(projects)),
        delete(CheckoutKey).where(CheckoutKey.project_id.in_(projects)),
        delete(ProjectSettings).where(ProjectSettings.project_id.in_(projects)),
        delete(Project).where(Project.org_id == org_id),
        delete(ContextEnvVar).where(ContextEnvVar.context_id.in_(contexts)),
        delete(ContextRestriction).where(ContextRestriction.context_id.in_(contexts)),
        delete(Context).where(Context.org_id == org_id),
        delete(GroupMember).where(GroupMember.group_id.in_(groups)),
        delete(Group).where(Group.org_id == org_id),
        delete(OrbAllowListEntry).where(OrbAllowListEntry.org_id == org_id),
        delete(Membership).where(Membership.org_id == org_id),
        delete(Organization).where(Organization.id == org_id),
    ):
        await session.execute(statement)
    return project_ids


async def list_orb_allow_list(session: AsyncSession, org_id: uuid.UUID) -> list[OrbAllowListEntry]:
    query = (
        select(OrbAllowListEntry)
        .where(OrbAllowListEntry.org_id == org_id)
        .order_by(OrbAllowListEntry.created_at, OrbAllowListEntry.id)
    )
    return list((await session.execute(query)).scalars())


async def add_orb_allow_list_entry(
    session: AsyncSession, org_id: uuid.UUID, name: str, prefix: str, auth: str
) -> OrbAllowListEntry:
    entry = OrbAllowListEntry(id=uuid.uuid4(), org_id=org_id, name=name, prefix=prefix, auth=auth, created_at=utcnow())
    session.add(entry)
    await session.flush()
    return entry


async def delete_orb_allow_list_entry(session: AsyncSession, org_id: uuid.UUID, entry_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(OrbAllowListEntry).where(OrbAllowListEntry.org_id == org_id, OrbAllowListEntry.id == entry_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_membership_role(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    membership = await session.get(Membership, (org_id, user_id))
    return membership.role if membership else None
