"""Accounts as an operator manages them: users, organizations, memberships and tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLES
from circlet.auth.tokens import new_token, token_hash
from circlet.db.models import Organization, User
from circlet.orgs import repository as orgs
from circlet.orgs.slugs import org_slug, parse_org_slug
from circlet.users import repository as users
from circlet.users.passwords import LONGEST_PASSWORD, SHORTEST_PASSWORD, hash_password

OPERATOR = "circlet-admin"


class AccountError(Exception):
    """An operator's request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class MintedToken:
    id: uuid.UUID
    token: str


def org_json(org: Organization) -> dict[str, Any]:
    return {"id": str(org.id), "slug": org_slug(org.vcs_type, org.name, org.id), "name": org.name}


def user_json(user: User) -> dict[str, Any]:
    return {"id": str(user.id), "login": user.login, "name": user.name}


async def ensure_org(session: AsyncSession, slug_or_name: str) -> Organization:
    """``acme`` means ``gh/acme``; any slug form is accepted."""
    text = slug_or_name if "/" in slug_or_name else f"gh/{slug_or_name}"
    slug = parse_org_slug(text)
    if slug is None or (slug.name is not None and not slug.name.strip()):
        raise AccountError(f"not an organization name or slug: {slug_or_name!r}")
    org = await orgs.find_org_by_slug(session, slug)
    if org is not None:
        return org
    if slug.org_id is not None:
        raise AccountError(f"no organization with id {slug.org_id}")
    assert slug.name is not None
    org = await orgs.add_org(session, slug.name, slug.vcs_type)
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="org.create",
        target_type="org",
        target_id=org.id,
        org_id=org.id,
        details={"name": org.name, "vcs_type": org.vcs_type},
    )
    return org


async def ensure_user(session: AsyncSession, login: str, name: str | None = None) -> User:
    if not login.strip():
        raise AccountError("a user login may not be empty")
    user = await users.find_user_by_login(session, login)
    if user is None:
        user = await users.add_user(session, login, name or login)
        await audit.record(
            session,
            actor_id=None,
            actor=OPERATOR,
            action="user.create",
            target_type="user",
            target_id=user.id,
            org_id=None,
            details={"login": login},
        )
    return user


async def add_member(session: AsyncSession, org: Organization, user: User, role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    await orgs.set_membership(session, org.id, user.id, role)
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="org.member.set",
        target_type="user",
        target_id=user.id,
        org_id=org.id,
        details={"login": user.login, "role": role},
    )


async def mint_token(session: AsyncSession, user: User, label: str = "") -> MintedToken:
    token = new_token()
    stored = await users.add_token(session, user.id, token_hash(token), label)
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="token.create",
        target_type="token",
        target_id=stored.id,
        org_id=None,
        details={"user": user.login, "label": label},
    )
    return MintedToken(stored.id, token)


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> None:
    revoked = await users.revoke_token(session, token_id)
    if revoked is None:
        raise AccountError(f"no active token with id {token_id}")
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="token.revoke",
        target_type="token",
        target_id=token_id,
        org_id=None,
        details={},
    )


async def allow_org_creation(session: AsyncSession, user: User, allowed: bool) -> None:
    """With ``CIRCLET_ORG_CREATION=operators``, whether this user may create organizations."""
    user.may_create_orgs = allowed
    await session.flush()
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="user.org_creation.set",
        target_type="user",
        target_id=user.id,
        org_id=None,
        details={"login": user.login, "allowed": allowed},
    )


async def find_user(session: AsyncSession, login: str) -> User:
    user = await users.find_user_by_login(session, login)
    if user is None:
        raise AccountError(f"no user with login {login!r}")
    return user


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    """The user's web sign-in password (argon2id); their web sessions begun before it end."""
    if not SHORTEST_PASSWORD <= len(password) <= LONGEST_PASSWORD:
        raise AccountError(f"a password must have {SHORTEST_PASSWORD} to {LONGEST_PASSWORD} characters")
    await users.set_password_hash(session, user.id, hash_password(password))
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="user.password.set",
        target_type="user",
        target_id=user.id,
        org_id=None,
        details={"login": user.login},
    )


async def create_user(session: AsyncSession, login: str, name: str | None = None) -> User:
    """A new user; an existing login is an error, not a reuse (``ensure_user`` reuses)."""
    if await users.find_user_by_login(session, login) is not None:
        raise AccountError(f"a user with login {login!r} already exists")
    return await ensure_user(session, login, name)


async def collaborations(session: AsyncSession, user_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        {
            "id": org_id,
            "vcs-type": vcs_type,
            "name": name,
            "avatar_url": avatar_url,
            "slug": org_slug(vcs_type, name, org_id),
        }
        for org_id, vcs_type, name, avatar_url in await users.collaborations_of(session, user_id)
    ]


async def visible_user(session: AsyncSession, viewer_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    """A user the viewer may see: themself, or someone who shares an organization with them."""
    if user_id != viewer_id and not await users.share_an_org(session, viewer_id, user_id):
        return None
    return await users.get_user(session, user_id)


async def find_org_by_name(session: AsyncSession, slug_or_name: str) -> Organization:
    """An existing organization; ``acme`` means ``gh/acme``, as for ``ensure_org``."""
    slug = parse_org_slug(slug_or_name if "/" in slug_or_name else f"gh/{slug_or_name}")
    org = await orgs.find_org_by_slug(session, slug) if slug is not None else None
    if org is None:
        raise AccountError(f"no organization {slug_or_name!r}")
    return org
