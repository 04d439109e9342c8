"""What may be done with organizations, and by whom.

Roles (docs/compatibility.md): any authenticated user may create an organization and
becomes its admin; members of every role read the URL orb allow-list; only admins change it or
delete the organization. Someone outside the organization gets 404, as for one that does not exist.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, Principal, require_role
from circlet.db.models import Organization
from circlet.http.errors import BadRequest, Conflict, Forbidden, NotFound
from circlet.orgs import repository as orgs
from circlet.orgs.slugs import org_slug, parse_org_slug
from circlet.users import repository as users

# GitHub and Bitbucket workspace names: letters, digits and - _ . , starting with a letter or digit.
VCS_ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ORB_AUTH_METHODS = ("github-oauth", "none", "bitbucket-oauth", "github-app")


def org_body(org: Organization) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "slug": org_slug(org.vcs_type, org.name, org.id),
        "vcs_type": org.vcs_type,
    }


async def find_org(session: AsyncSession, principal: Principal, slug_or_id: str) -> Organization:
    """The organization named by a UUID or any slug form, if the caller belongs to it; else 404."""
    try:
        org = await orgs.get_org(session, uuid.UUID(slug_or_id))
    except ValueError:
        slug = parse_org_slug(slug_or_id)
        org = await orgs.find_org_by_slug(session, slug) if slug is not None else None
    if org is None or principal.role_in(org.id) is None:
        raise NotFound("Organization not found.")
    return org


def check_org_name(name: str, vcs_type: str) -> None:
    if vcs_type == "circleci":
        if not name.strip() or name != name.strip() or len(name) > 100 or "/" in name or not name.isprintable():
            raise BadRequest("name: 1 to 100 printable characters, no '/', no surrounding whitespace.")
    elif not VCS_ORG_NAME.match(name):
        raise BadRequest("name: 1 to 100 letters, digits, '-', '_' or '.', starting with a letter or digit.")


async def create_org(
    session: AsyncSession, principal: Principal, name: str, vcs_type: str, *, operators_only: bool = False
) -> dict[str, Any]:
    """``operators_only`` (``CIRCLET_ORG_CREATION=operators``): only users an operator allowed may."""
    if operators_only:
        user = await users.get_user(session, principal.user_id)
        if user is None or not user.may_create_orgs:
            raise Forbidden("Only users the operator allowed may create organizations on this server.")
    check_org_name(name, vcs_type)
    existing = parse_org_slug(f"{vcs_type}/{name}") if vcs_type != "circleci" else None
    if existing is not None and await orgs.find_org_by_slug(session, existing) is not None:
        raise Conflict(f"An organization named '{name}' already exists.")
    try:
        org = await orgs.add_org(session, name, vcs_type)
    except orgs.DuplicateOrg:
        raise Conflict(f"An organization named '{name}' already exists.") from None
    await orgs.set_membership(session, org.id, principal.user_id, ROLE_ADMIN)
    await record(session, principal, "org.create", org.id, {"name": name, "vcs_type": vcs_type})
    return org_body(org)


async def delete_org(session: AsyncSession, principal: Principal, slug_or_id: str) -> list[uuid.UUID]:
    """Deletes the organization; returns its projects' ids, for their mirrors to go after the commit."""
    org = await find_org(session, principal, slug_or_id)
    require_role(principal, org.id, ROLE_ADMIN, missing="Organization not found.", action="delete it")
    project_ids = await orgs.delete_org(session, org.id)
    await record(session, principal, "org.delete", org.id, {"name": org.name, "vcs_type": org.vcs_type})
    return project_ids


# -- URL orb allow-list ---------------------------------------------------------------------------


async def list_orb_allow_list(session: AsyncSession, principal: Principal, slug_or_id: str) -> dict[str, Any]:
    org = await find_org(session, principal, slug_or_id)
    entries = await orgs.list_orb_allow_list(session, org.id)
    return {"items": [{"id": e.id, "name": e.name, "prefix": e.prefix, "auth": e.auth} for e in entries]}


async def add_orb_allow_list_entry(
    session: AsyncSession, principal: Principal, slug_or_id: str, name: str, prefix: str, auth: str
) -> dict[str, Any]:
    org = await find_org(session, principal, slug_or_id)
    require_role(principal, org.id, ROLE_ADMIN, missing="Organization not found.", action="change the allow-list")
    if not name.strip() or len(name) > 255 or not name.isprintable():
        raise BadRequest("name: 1 to 255 printable characters.")
    if not prefix.startswith("https://") or len(prefix) > 2048 or any(c.isspace() for c in prefix):
        raise BadRequest("prefix: an https:// URL prefix of at most 2048 characters, without spaces.")
    entry = await orgs.add_orb_allow_list_entry(session, org.id, name, prefix, auth)
    await record(session, principal, "org.orb_allow_list.create", org.id, {"id": str(entry.id), "prefix": prefix})
    return {"id": entry.id, "message": "URL orb allow-list entry created."}


async def remove_orb_allow_list_entry(
    session: AsyncSession, principal: Principal, slug_or_id: str, entry_id: str
) -> dict[str, Any]:
    org = await find_org(session, principal, slug_or_id)
    require_role(principal, org.id, ROLE_ADMIN, missing="Organization not found.", action="change the allow-list")
    try:
        parsed = uuid.UUID(entry_id)
    except ValueError:
        raise NotFound("Allow-list entry not found.") from None
    if not await orgs.delete_orb_allow_list_entry(session, org.id, parsed):
        raise NotFound("Allow-list entry not found.")
    await record(session, principal, "org.orb_allow_list.delete", org.id, {"id": entry_id})
    return {"id": parsed, "message": "URL orb allow-list entry removed."}


async def record(
    session: AsyncSession, principal: Principal, action: str, org_id: uuid.UUID, details: dict[str, Any]
) -> None:
    await audit.record(
        session,
        actor_id=principal.user_id,
        actor=principal.login,
        action=action,
        target_type="org",
        target_id=org_id,
        org_id=org_id,
        details=details,
    )
