"""An organization's roles, and the one check every service makes of the caller's role."""

from __future__ import annotations

import uuid

from circlet.auth.authentication import Principal
from circlet.http.errors import Forbidden, NotFound

ROLE_ADMIN = "admin"
ROLE_MEMBER = "member"
ROLE_VIEWER = "viewer"
ROLES = (ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER)
RANK = {ROLE_VIEWER: 1, ROLE_MEMBER: 2, ROLE_ADMIN: 3}


def require_role(principal: Principal, org_id: uuid.UUID, least: str, *, missing: str, action: str) -> str:
    """The caller's role in the organization, at least ``least``: 404 (``missing``) for an outsider,
    so that nothing reveals what another organization holds, and 403 for too small a role."""
    role = principal.role_in(org_id)
    if role is None:
        raise NotFound(missing)
    if RANK[role] < RANK[least]:
        raise Forbidden(f"Permission denied: only organization {least}s may {action}.")
    return role
