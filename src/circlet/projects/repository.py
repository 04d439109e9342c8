"""Queries on projects, their settings, environment variables and checkout keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import PLAIN, STAMP, UUID, RawQuery, fetch_all, insert_for
from circlet.db.models import (
    CheckoutKey,
    ContextRestriction,
    Organization,
    Project,
    ProjectEnvVar,
    ProjectSettings,
)
from circlet.db.types import utcnow
from circlet.orgs.slugs import ProjectSlug


class DuplicateProject(Exception):
    pass


@dataclass(frozen=True)
class ProjectInOrg:
    """A project with the organization fields every project response carries."""

    project: Project
    org: Organization


async def get_project(session: AsyncSession, project_id: uuid.UUID) -> Project | None:
    return await session.get(Project, project_id)


def project_by_slug(slug: ProjectSlug) -> Select[Project, Organization]:
    """One indexed lookup: (vcs_type, org name) and (org, project name) are both unique keys."""
    query = select(Project, Organization).join(Organization, Organization.id == Project.org_id)
    if slug.project_id is not None:
        return query.where(Project.id == slug.project_id, Organization.id == slug.org.org_id)
    assert slug.org.name is not None and slug.name is not None
    return query.where(
        Organization.vcs_type == slug.org.vcs_type,
        Organization.name_key == slug.org.name.lower(),
        Project.name_key == slug.name.lower(),
    )


async def projects_in_orgs(session: AsyncSession, org_ids: Sequence[uuid.UUID]) -> list[tuple[Project, Organization]]:
    """The projects of these organizations, by organization name, then project name."""
    if not org_ids:
        return []
    query = (
        select(Project, Organization)
        .join(Organization, Organization.id == Project.org_id)
        .where(Project.org_id.in_(org_ids))
        .order_by(Organization.name_key, Organization.id, Project.name_key)
    )
    return [(project, org) for project, org in (await session.execute(query)).all()]


async def find_project(session: AsyncSession, slug: ProjectSlug) -> ProjectInOrg | None:
    row = (await session.execute(project_by_slug(slug))).first()
    return ProjectInOrg(row[0], row[1]) if row else None


@dataclass(frozen=True, slots=True)
class ProjectFields:
    """The project columns a response carries, read without the ORM."""

    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    vcs_url: str
    default_branch: str


@dataclass(frozen=True, slots=True)
class OrgFields:
    id: uuid.UUID
    name: str
    vcs_type: str


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """``ProjectInOrg`` for reading only: plain values, not ORM objects attached to the session."""

    project: ProjectFields
    org: OrgFields


# Resolving a slug is the first step of every project request; for the reads that only need the
# fields above it is fixed SQL on the driver's connection (circlet.db.dialect.fetch_all): building the
# select and loading two ORM objects cost ten times the lookup. Both forms are one probe of a unique
# index ((vcs_type, name_key) of organizations, (org_id, name_key) of projects, or primary keys), so
# the cost does not grow with the number of organizations or projects.
_PROJECT_COLUMNS = (
    "SELECT projects.id, projects.org_id, projects.name, projects.vcs_url, projects.default_branch, "
    "organizations.name, organizations.vcs_type FROM projects JOIN organizations ON organizations.id = projects.org_id "
)
_PROJECT_KINDS = (UUID, UUID, PLAIN, PLAIN, PLAIN, PLAIN, PLAIN)
_PROJECT_BY_NAMES = RawQuery(
    _PROJECT_COLUMNS + "WHERE organizations.vcs_type = ? AND organizations.name_key = ? AND projects.name_key = ?",
    params=(PLAIN, PLAIN, PLAIN),
    columns=_PROJECT_KINDS,
)
_PROJECT_BY_IDS = RawQuery(
    _PROJECT_COLUMNS + "WHERE projects.id = ? AND organizations.id = ?",
    params=(UUID, UUID),
    columns=_PROJECT_KINDS,
)


async def find_project_ref(session: AsyncSession, slug: ProjectSlug) -> ProjectRef | None:
    """What ``find_project`` finds, as plain values."""
    rows = await _by_slug(session, slug, _PROJECT_BY_NAMES, _PROJECT_BY_IDS)
    if not rows:
        return None
    project_id, org_id, name, vcs_url, default_branch, org_name, vcs_type = rows[0]
    return ProjectRef(
        ProjectFields(project_id, org_id, name, vcs_url, default_branch), OrgFields(org_id, org_name, vcs_type)
    )


# The same lookups for the reads that need only the project's id and its organization's (a project's
# variables): the same index probes, two columns instead of seven, no objects built from them.
_PROJECT_IDS = (
    "SELECT projects.id, projects.org_id FROM projects JOIN organizations ON organizations.id = projects.org_id "
)
_PROJECT_IDS_BY_NAMES = RawQuery(
    _PROJECT_IDS + "WHERE organizations.vcs_type = ? AND organizations.name_key = ? AND projects.name_key = ?",
    params=(PLAIN, PLAIN, PLAIN),
    columns=(UUID, UUID),
)
_PROJECT_IDS_BY_IDS = RawQuery(
    _PROJECT_IDS + "WHERE projects.id = ? AND organizations.id = ?",
    params=(UUID, UUID),
    columns=(UUID, UUID),
)


async def find_project_ids(session: AsyncSession, slug: ProjectSlug) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(project id, organization id) of the project ``find_project_ref`` finds."""
    rows = await _by_slug(session, slug, _PROJECT_IDS_BY_NAMES, _PROJECT_IDS_BY_IDS)
    if not rows:
        return None
    project_id, org_id = rows[0]
    return project_id, org_id


async def _by_slug(
    session: AsyncSession, slug: ProjectSlug, by_names: RawQuery, by_ids: RawQuery
) -> list[tuple[Any, ...]]:
    """The rows of one of a pair of lookups: by (vcs type, organization name, project name), or by
    the ids of a ``circleci/<org-id>/<project-id>`` slug (both unique keys: names match case-insensitively)."""
    if slug.project_id is not None:
        return await fetch_all(session, by_ids, slug.project_id, slug.org.org_id)
    assert slug.org.name is not None and slug.name is not None
    return await fetch_all(session, by_names, slug.org.vcs_type, slug.org.name.lower(), slug.name.lower())


async def find_project_by_name(session: AsyncSession, org_id: uuid.UUID, name: str) -> Project | None:
    query = select(Project).where(Project.org_id == org_id, Project.name_key == name.lower())
    return (await session.execute(query)).scalar_one_or_none()


async def add_project(
    session: AsyncSession,
    org_id: uuid.UUID,
    name: str,
    vcs_url: str,
    default_branch: str,
    *,
    repo_set_by_operator: bool = False,
) -> Project:
    project = Project(
        id=uuid.uuid4(),
        org_id=org_id,
        name=name,
        name_key=name.lower(),
        vcs_url=vcs_url,
        default_branch=default_branch,
        repo_set_by_operator=repo_set_by_operator,
        created_at=utcnow(),
    )
    session.add(project)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DuplicateProject(name) from exc
    return project


async def set_code_location(
    session: AsyncSession, project_id: uuid.UUID, vcs_url: str, default_branch: str, *, by_operator: bool
) -> None:
    """Who set the location decides how it is fetched (``Project.repo_set_by_operator``)."""
    values = {"vcs_url": vcs_url, "default_branch": default_branch, "repo_set_by_operator": by_operator}
    await session.execute(update(Project).where(Project.id == project_id).values(**values))


async def delete_project(session: AsyncSession, project_id: uuid.UUID) -> None:
    """The project, everything under it, and the context restrictions that name it, children first."""
    for statement in (
        delete(ProjectEnvVar).where(ProjectEnvVar.project_id == project_id),
        delete(CheckoutKey).where(CheckoutKey.project_id == project_id),
        delete(ProjectSettings).where(ProjectSettings.project_id == project_id),
        delete(ContextRestriction).where(
            ContextRestriction.restriction_type == "project",
            ContextRestriction.restriction_value == str(project_id),
        ),
        delete(Project).where(Project.id == project_id),
    ):
        await session.execute(statement)


# -- settings -------------------------------------------------------------------------------------


async def get_settings(session: AsyncSession, project_id: uuid.UUID) -> ProjectSettings | None:
    return await session.get(ProjectSettings, project_id)


async def save_settings(session: AsyncSession, project_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Insert the settings row or update the given columns of it."""
    statement = insert_for(session, ProjectSettings.metadata.tables[ProjectSettings.__tablename__]).values(
        project_id=project_id, **values
    )
    statement = statement.on_conflict_do_update(index_elements=["project_id"], set_=values)
    await session.execute(statement)


# -- environment variables ------------------------------------------------------------------------


# A project's variables are read on every list and before every job: fixed SQL on the driver's
# connection (circlet.db.dialect.fetch_all), as for the project lookup above.
_ENV_VARS = RawQuery(
    "SELECT project_env_vars.name, project_env_vars.key_id, project_env_vars.ciphertext, "
    "project_env_vars.created_at FROM project_env_vars WHERE project_env_vars.project_id = ? "
    "ORDER BY project_env_vars.name",
    params=(UUID,),
    columns=(PLAIN, PLAIN, PLAIN, STAMP),
)


async def list_env_vars(session: AsyncSession, project_id: uuid.UUID) -> list[tuple[str, str, bytes, str]]:
    """(name, key_id, ciphertext, created-at) of every variable of the project, by name; created-at is
    the response's RFC 3339 text (``circlet.http.responses.timestamp`` of the time)."""
    return await fetch_all(session, _ENV_VARS, project_id)


async def get_env_var(session: AsyncSession, project_id: uuid.UUID, name: str) -> ProjectEnvVar | None:
    return await session.get(ProjectEnvVar, (project_id, name))


async def count_env_vars(session: AsyncSession, project_id: uuid.UUID) -> int:
    query = select(func.count()).where(ProjectEnvVar.project_id == project_id)
    return (await session.execute(query)).scalar_one()


async def upsert_env_var(
    session: AsyncSession, project_id: uuid.UUID, name: str, key_id: str, ciphertext: bytes
) -> datetime:
    """Create or replace the variable; returns its creation time."""
    now = utcnow()
    statement = insert_for(session, ProjectEnvVar.metadata.tables[ProjectEnvVar.__tablename__]).values(
        project_id=project_id, name=name, key_id=key_id, ciphertext=ciphertext, created_at=now, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["project_id", "name"],
        set_={"key_id": key_id, "ciphertext": ciphertext, "updated_at": now},
    ).returning(ProjectEnvVar.created_at)
    created: datetime = (await session.execute(statement)).scalar_one()
    return created


async def delete_env_var(session: AsyncSession, project_id: uuid.UUID, name: str) -> bool:
    result = await session.execute(
        delete(ProjectEnvVar).where(ProjectEnvVar.project_id == project_id, ProjectEnvVar.name == name)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def env_vars_not_sealed_with(session: AsyncSession, key_id: str, limit: int) -> list[ProjectEnvVar]:
    query = select(ProjectEnvVar).where(ProjectEnvVar.key_id != key_id).limit(limit)
    return list((await session.execute(query)).scalars())


# -- checkout keys --------------------------------------------------------------------------------


async def list_checkout_keys(session: AsyncSession, project_id: uuid.UUID) -> list[CheckoutKey]:
    query = (
        select(CheckoutKey).where(CheckoutKey.project_id == project_id).order_by(CheckoutKey.created_at, CheckoutKey.id)
    )
    return list((await session.execute(query)).scalars())


async def find_checkout_key(session: AsyncSession, project_id: uuid.UUID, fingerprint: str) -> CheckoutKey | None:
    column = CheckoutKey.fingerprint_sha256 if fingerprint.startswith("SHA256:") else CheckoutKey.fingerprint_md5
    query = select(CheckoutKey).where(CheckoutKey.project_id == project_id, column == fingerprint)
    return (await session.execute(query)).scalar_one_or_none()


async def add_checkout_key(session: AsyncSession, key: CheckoutKey) -> None:
    session.add(key)
    await session.flush()


async def delete_checkout_key(session: AsyncSession, key_id: uuid.UUID) -> None:
    await session.execute(delete(CheckoutKey).where(CheckoutKey.id == key_id))


async def prefer_newest_checkout_key(session: AsyncSession, project_id: uuid.UUID) -> None:
    """Exactly one key of a project is preferred, the newest, whenever it has any."""
    newest = (
        await session.execute(
            select(CheckoutKey.id)
            .where(CheckoutKey.project_id == project_id)
            .order_by(CheckoutKey.created_at.desc(), CheckoutKey.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    await session.execute(
        update(CheckoutKey)
        .where(CheckoutKey.project_id == project_id, CheckoutKey.id != newest, CheckoutKey.preferred.is_(True))
        .values(preferred=False)
    )
    if newest is not None:
        await session.execute(update(CheckoutKey).where(CheckoutKey.id == newest).values(preferred=True))


async def checkout_keys_not_sealed_with(session: AsyncSession, key_id: str, limit: int) -> list[CheckoutKey]:
    query = select(CheckoutKey).where(CheckoutKey.key_id != key_id).limit(limit)
    return list((await session.execute(query)).scalars())
