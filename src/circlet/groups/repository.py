"""Queries on groups and their members."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import insert_for
from circlet.db.models import ContextRestriction, Group, GroupMember, User
from circlet.db.types import utcnow


class DuplicateGroup(Exception):
    pass


async def get_group(session: AsyncSession, group_id: uuid.UUID) -> Group | None:
    return await session.get(Group, group_id)


async def find_group_by_name(session: AsyncSession, org_id: uuid.UUID, name: str) -> Group | None:
    query = select(Group).where(Group.org_id == org_id, Group.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def list_groups(
    session: AsyncSession, org_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Group]:
    query = select(Group).where(Group.org_id == org_id)
    if after is not None:
        query = query.where(tuple_(Group.created_at, Group.id) > tuple_(*after))
    query = query.order_by(Group.created_at, Group.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def count_groups(session: AsyncSession, org_id: uuid.UUID) -> int:
    return (await session.execute(select(func.count()).where(Group.org_id == org_id))).scalar_one()


async def add_group(session: AsyncSession, org_id: uuid.UUID, name: str, description: str) -> Group:
    group = Group(id=uuid.uuid4(), org_id=org_id, name=name, description=description, created_at=utcnow())
    session.add(group)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateGroup(name) from exc
    return group


async def delete_group(session: AsyncSession, group_id: uuid.UUID) -> None:
    """The group, its members and the context restrictions that name it, children first."""
    for statement in (
        delete(GroupMember).where(GroupMember.group_id == group_id),
        delete(ContextRestriction).where(
            ContextRestriction.restriction_type == "group",
            ContextRestriction.restriction_value == str(group_id),
        ),
        delete(Group).where(Group.id == group_id),
    ):
        await session.execute(statement)


async def add_member(session: AsyncSession, group_id: uuid.UUID, user_id: uuid.UUID) -> None:
    statement = insert_for(session, GroupMember.metadata.tables[GroupMember.__tablename__]).values(
        group_id=group_id, user_id=user_id
    )
    await session.execute(statement.on_conflict_do_nothing(index_elements=["group_id", "user_id"]))


async def groups_of_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> set[uuid.UUID]:
    """The ids of the organization's groups the user is in, for context ``group`` restrictions."""
    query = (
        select(GroupMember.group_id)
        .join(Group, Group.id == GroupMember.group_id)
        .where(Group.org_id == org_id, GroupMember.user_id == user_id)
    )
    return set((await session.execute(query)).scalars())


async def members_of_groups(
    session: AsyncSession, org_id: uuid.UUID, group_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str, str]]:
    """(group id, login, name) of every member of these groups of the organization, by login: one
    query for a page of groups."""
    if not group_ids:
        return []
    query = (
        select(GroupMember.group_id, User.login, User.name)
        .join(User, User.id == GroupMember.user_id)
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.group_id.in_(group_ids), Group.org_id == org_id)
        .order_by(User.login_key)
    )
    return [(group_id, login, name) for group_id, login, name in await session.execute(query)]
