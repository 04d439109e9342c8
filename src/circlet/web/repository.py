"""Queries on web sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import ApiToken, User, WebSession
from circlet.db.types import utcnow


@dataclass(frozen=True)
class SessionOwner:
    session_id: uuid.UUID
    api_token_id: uuid.UUID | None
    user_id: uuid.UUID
    login: str
    name: str
    avatar_url: str | None


async def add_session(
    session: AsyncSession, secret_hash: str, user_id: uuid.UUID, api_token_id: uuid.UUID | None, expires_at: datetime
) -> uuid.UUID:
    row = WebSession(
        id=uuid.uuid4(),
        secret_hash=secret_hash,
        user_id=user_id,
        api_token_id=api_token_id,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return row.id


async def find_session_owner(session: AsyncSession, secret_hash: str) -> SessionOwner | None:
    """The live session with this secret: not expired, and if begun with a token, that token not revoked."""
    row = (
        await session.execute(
            select(WebSession.id, WebSession.api_token_id, User.id, User.login, User.name, User.avatar_url)
            .join(User, User.id == WebSession.user_id)
            .outerjoin(ApiToken, ApiToken.id == WebSession.api_token_id)
            .where(
                WebSession.secret_hash == secret_hash,
                WebSession.expires_at > utcnow(),
                or_(WebSession.api_token_id.is_(None), ApiToken.revoked_at.is_(None)),
            )
        )
    ).first()
    return SessionOwner(*row) if row else None


async def find_password_hash(session: AsyncSession, login_key: str) -> tuple[uuid.UUID, str | None] | None:
    row = (await session.execute(select(User.id, User.password_hash).where(User.login_key == login_key))).first()
    return (row[0], row[1]) if row else None


async def delete_session(session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == session_id))


async def delete_expired(session: AsyncSession) -> None:
    await session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
