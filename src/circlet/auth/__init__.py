"""Who is calling and what they may do: the spec's token schemes (``Principal``, ``Authenticator``,
the ``authenticate`` dependency) and organization roles (``require_role``). Both ``http`` and the
area packages use it; it uses ``users``' repository to find a token's owner."""

from circlet.auth.authentication import Authenticator, Principal, authenticate, token_from_request
from circlet.auth.roles import RANK, ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER, ROLES, require_role

__all__ = [
    "RANK",
    "ROLES",
    "ROLE_ADMIN",
    "ROLE_MEMBER",
    "ROLE_VIEWER",
    "Authenticator",
    "Principal",
    "authenticate",
    "require_role",
    "token_from_request",
]
