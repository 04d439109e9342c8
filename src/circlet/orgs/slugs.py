"""Owner slugs in every form clients build: ``gh/acme``, ``github/acme``, ``bb/acme``,
``bitbucket/acme`` and ``circleci/<org-uuid>``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import unquote

VCS_BY_PREFIX = {
    "gh": "github",
    "github": "github",
    "bb": "bitbucket",
    "bitbucket": "bitbucket",
    "circleci": "circleci",
}
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


PROVIDER_NAMES = {"github": "GitHub", "bitbucket": "Bitbucket", "circleci": "CircleCI"}


@dataclass(frozen=True)
class ProjectSlug:
    """``gh/<org>/<repo>`` (or ``github/``, ``bb/``, ``bitbucket/``) by names, or
    ``circleci/<org-uuid>/<project-uuid>`` by ids."""

    org: OrgSlug
    name: str | None = None
    project_id: uuid.UUID | None = None


def parse_project_slug(provider: str, organization: str, project: str) -> ProjectSlug | None:
    """``None`` when the three parts name no project at all."""
    org = parse_org_slug(f"{provider}/{organization}")
    if org is None or not project or "/" in project:
        return None
    if org.vcs_type != "circleci":
        return ProjectSlug(org, name=project)
    try:
        return ProjectSlug(org, project_id=uuid.UUID(project))
    except ValueError:
        return None


def project_slug(vcs_type: str, org_name: str, org_id: uuid.UUID, name: str, project_id: uuid.UUID) -> str:
    if vcs_type == "circleci":
        return f"circleci/{org_id}/{project_id}"
    return f"{SHORT_PREFIX[vcs_type]}/{org_name}/{name}"
