"""Owner slugs in every form clients build: ``gh/acme``, ``github/acme``, ``bb/acme``,
``bitbucket/acme`` and ``circleci/<org-uuid>``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import unquote

VCS_BY_PREFIX = {"gh": "github", "github": "github", "bb": "bitbucket", "bitbucket": "bitbucket", "circleci": "circleci"}
SHORT_PREFIX = {"github": "gh", "bitbucket": "bb", "circleci": "circleci"}


@dataclass(frozen=True)
class OrgSlug:
    vcs_type: str
    name: str | None = None
    org_id: uuid.UUID | None = None


def parse_org_slug(slug: str) -> OrgSlug | None:
    """``None`` when the text is no organization slug at all."""
    parts = unquote(slug).strip("/").split("/")
    if len(parts) != 2 or not parts[1]:
        return None
    vcs_type = VCS_BY_PREFIX.get(parts[0].lower())
    if vcs_type is None:
        return None
    if vcs_type == "circleci":
        try:
            return OrgSlug(vcs_type, org_id=uuid.UUID(parts[1]))
        except ValueError:
            return None
    return OrgSlug(vcs_type, name=parts[1])


def org_slug(vcs_type: str, name: str, org_id: uuid.UUID) -> str:
    if vcs_type == "circleci":
        return f"circleci/{org_id}"
    return f"{SHORT_PREFIX[vcs_type]}/{name}"
