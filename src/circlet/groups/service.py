"""What may be done with groups, and by whom.

Roles (docs/compatibility.md): members of every role read the organization's groups; only
admins create and delete them; an outsider gets 404. Members join a group through the operator
command ``circlet admin group add-member``: the spec has no member operations.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, ROLE_VIEWER, Principal, require_role
from circlet.db.models import Group, Organization, User
from circlet.groups import repository as groups
from circlet.http.errors import BadRequest, Conflict, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.text import check_single_line_name
from circlet.orgs import repository as orgs
from circlet.users.service import OPERATOR, AccountError

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
NAME_LENGTH = 255
DESCRIPTION_LENGTH = 2000
MISSING_ORG = "Organization not found."


def group_body(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "description": group.description}


def parse_id(text: str, missing: str) -> uuid.UUID:
    """Path ids the spec types as plain strings: anything but a UUID names nothing, so 404."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(missing) from None


@dataclass
class GroupService:
    page_tokens: PageTokens

    async def list_groups(
        self,
        session: AsyncSession,
        principal: Principal,
        org_id: str,
        limit: int | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_VIEWER, missing=MISSING_ORG, action="read groups")
        size = min(max(DEFAULT_PAGE_SIZE if limit is None else limit, 1), MAX_PAGE_SIZE)
        scope = f"groups:{org}"
        after = self._position(page_token, scope) if page_token else None
        rows = await groups.list_groups(session, org, after, size + 1)
        next_token = None
        if len(rows) > size:
            last = rows[size - 1]
            next_token = self.page_tokens.encode(scope, [last.created_at.isoformat(), str(last.id)])
        return {
            "items": [group_body(g) for g in rows[:size]],
            "next_page_token": next_token,
            "total_count": await groups.count_groups(session, org),
        }

    async def members(
        self, session: AsyncSession, principal: Principal, org_id: str, group_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, list[dict[str, str]]]:
        """The members of the organization's groups (the web app's groups page; the spec has no call)."""
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_VIEWER, missing=MISSING_ORG, action="read groups")
        found: dict[uuid.UUID, list[dict[str, str]]] = {group_id: [] for group_id in group_ids}
        for group_id, login, name in await groups.members_of_groups(session, org, group_ids):
            found[group_id].append({"login": login, "name": name})
        return found

    async def create_group(
        self, session: AsyncSession, principal: Principal, org_id: str, name: str, description: str
    ) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_ADMIN, missing=MISSING_ORG, action="create groups")
        check_single_line_name(name, "name")
        if not name.strip() or name != name.strip() or len(name) > NAME_LENGTH or not name.isprintable():
            raise BadRequest(f"name: 1 to {NAME_LENGTH} printable characters, no surrounding whitespace.")
        if len(description) > DESCRIPTION_LENGTH:
            raise BadRequest(f"description: at most {DESCRIPTION_LENGTH} characters.")
        conflict = f"Failed to create group, group {name} already exists."
        if await groups.find_group_by_name(session, org, name) is not None:
            raise Conflict(conflict)
        try:
            group = await groups.add_group(session, org, name, description)
        except groups.DuplicateGroup:
            raise Conflict(conflict) from None
        await self._audit(session, principal, "group.create", group, {"name": name})
        return group_body(group)

    async def get_group(self, session: AsyncSession, principal: Principal, org_id: str, group_id: str) -> Group:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_VIEWER, missing=MISSING_ORG, action="read groups")
        group = await groups.get_group(session, parse_id(group_id, "Group not found."))
        if group is None or group.org_id != org:
            raise NotFound("Group not found.")
        return group

    async def delete_group(self, session: AsyncSession, principal: Principal, org_id: str, group_id: str) -> None:
        group = await self.get_group(session, principal, org_id, group_id)
        require_role(principal, group.org_id, ROLE_ADMIN, missing=MISSING_ORG, action="delete groups")
        await groups.delete_group(session, group.id)
        await self._audit(session, principal, "group.delete", group, {"name": group.name})

    def _position(self, page_token: str, scope: str) -> tuple[datetime, uuid.UUID]:
        position = self.page_tokens.decode(page_token, scope)
        try:
            return datetime.fromisoformat(position[0]), uuid.UUID(position[1])
        except (ValueError, TypeError, IndexError):
            raise BadRequest("page-token is invalid.") from None

    @staticmethod
    async def _audit(
        session: AsyncSession, principal: Principal, action: str, group: Group, details: dict[str, Any]
    ) -> None:
        await audit.record(
            session,
            actor_id=principal.user_id,
            actor=principal.login,
            action=action,
            target_type="group",
            target_id=group.id,
            org_id=group.org_id,
            details=details,
        )


async def add_group_member(session: AsyncSession, org: Organization, group_name: str, user: User) -> Group:
    """The operator's way to put a member of the organization into one of its groups."""
    group = await groups.find_group_by_name(session, org.id, group_name)
    if group is None:
        raise AccountError(f"no group named {group_name!r} in {org.name}")
    if await orgs.get_membership_role(session, org.id, user.id) is None:
        raise AccountError(f"{user.login} is not a member of {org.name}; add them with `admin org add-member`")
    await groups.add_member(session, group.id, user.id)
    await audit.record(
        session,
        actor_id=None,
        actor=OPERATOR,
        action="group.member.add",
        target_type="group",
        target_id=group.id,
        org_id=org.id,
        details={"login": user.login},
    )
    return group
