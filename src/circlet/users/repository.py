"""Queries on users, tokens and memberships."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import ApiToken, Membership, Organization, User
from circlet.db.types import utcnow


@dataclass(frozen=True)
class TokenOwner:
    token_id: uuid.UUID
    user_id: uuid.UUID
    login: str
    name: str
    avatar_url: str | None


async def find_token_owner(session: AsyncSession, hashed: str) -> TokenOwner | None:
    row = (
        await session.execute(
            select(ApiToken.id, User.id, User.login, User.name, User.avatar_url)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hashed, ApiToken.revoked_at.is_(None))
        )
    ).first()
    return TokenOwner(*row) if row else None


async def roles_of(session: AsyncSession, user_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = await session.execute(
        select(Membership.org_id, Membership.role).where(Membership.user_id == user_id)
    )
    return {org_id: role for org_id, role in rows}


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def find_user_by_login(session: AsyncSession, login: str) -> User | None:
    return (await session.execute(select(User).where(User.login_key == login.lower()))).scalar_one_or_none()


async def add_user(session: AsyncSession, login: str, name: str) -> User:
    user = User(id=uuid.uuid4(), login=login, login_key=login.lower(), name=name, created_at=utcnow())
    session.add(user)
    await session.flush()
    return user


async def add_token(session: AsyncSession, user_id: uuid.UUID, hashed: str, label: str) -> ApiToken:
    token = ApiToken(id=uuid.uuid4(), user_id=user_id, token_hash=hashed, label=label, created_at=utcnow())
    session.add(token)
    await session.flush()
    return token


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> ApiToken | None:
    token = await session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return None
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=utcnow()))
    return token


async def collaborations_of(
    session: AsyncSession, user_id: uuid.UUID
) -> Sequence[Row[uuid.UUID, str, str, str]]:
    """(id, vcs_type, name, avatar_url) of every organization the user belongs to, by name: one
    query over the memberships-by-user index."""
    query = (
        select(Organization.id, Organization.vcs_type, Organization.name, Organization.avatar_url)
        .join(Membership, Membership.org_id == Organization.id)
        .where(Membership.user_id == user_id)
        .order_by(Organization.name_key, Organization.vcs_type)
    )
    return (await session.execute(query)).all()


async def share_an_org(session: AsyncSession, user_id: uuid.UUID, other_id: uuid.UUID) -> bool:
    mine = select(Membership.org_id).where(Membership.user_id == user_id)
    query = (
        select(Membership.org_id).where(Membership.user_id == other_id, Membership.org_id.in_(mine)).limit(1)
    )
    return (await session.execute(query)).first() is not None
