"""Queries on users, tokens and memberships."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import PLAIN, UUID, RawQuery, fetch_all
from circlet.db.models import ApiToken, Membership, User, WebSession
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
    rows = await session.execute(select(Membership.org_id, Membership.role).where(Membership.user_id == user_id))
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


async def set_password_hash(session: AsyncSession, user_id: uuid.UUID, password_hash: str) -> None:
    """A new password ends the user's web sessions: whoever knew the old one is signed out."""
    await session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
    await session.execute(delete(WebSession).where(WebSession.user_id == user_id))


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> ApiToken | None:
    token = await session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return None
    await session.execute(update(ApiToken).where(ApiToken.id == token_id).values(revoked_at=utcnow()))
    return token


# Fixed SQL on the driver's connection (circlet.db.dialect.fetch_all): for a user in 50 organizations,
# SQLAlchemy's result processing cost more than the query.
_COLLABORATIONS = RawQuery(
    "SELECT organizations.id, organizations.vcs_type, organizations.name, organizations.avatar_url "
    "FROM organizations JOIN memberships ON memberships.org_id = organizations.id "
    "WHERE memberships.user_id = ? ORDER BY organizations.name_key, organizations.vcs_type",
    params=(UUID,),
    columns=(UUID, PLAIN, PLAIN, PLAIN),
)


async def collaborations_of(session: AsyncSession, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str, str]]:
    """(id, vcs_type, name, avatar_url) of every organization the user belongs to, by name: one
    query over the memberships-by-user index."""
    return await fetch_all(session, _COLLABORATIONS, user_id)


async def share_an_org(session: AsyncSession, user_id: uuid.UUID, other_id: uuid.UUID) -> bool:
    mine = select(Membership.org_id).where(Membership.user_id == user_id)
    query = select(Membership.org_id).where(Membership.user_id == other_id, Membership.org_id.in_(mine)).limit(1)
    return (await session.execute(query)).first() is not None
