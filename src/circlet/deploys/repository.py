"""Every query of the Deploy and Rollback tags."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from circlet.db.models import DeployComponent, DeployEnvironment, DeployRelease, Job, PipelineDefinition, Project
from circlet.db.types import utcnow

Position = tuple[datetime, uuid.UUID]


async def list_environments(
    session: AsyncSession, org_id: uuid.UUID, after: Position | None, limit: int
) -> list[DeployEnvironment]:
    query = select(DeployEnvironment).where(DeployEnvironment.org_id == org_id)
    if after is not None:
        query = query.where(
            or_(
                DeployEnvironment.created_at > after[0],
                and_(DeployEnvironment.created_at == after[0], DeployEnvironment.id > after[1]),
            )
        )
    query = query.order_by(DeployEnvironment.created_at, DeployEnvironment.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def get_environment(session: AsyncSession, environment_id: uuid.UUID) -> DeployEnvironment | None:
    return await session.get(DeployEnvironment, environment_id)


async def find_environment(session: AsyncSession, org_id: uuid.UUID, name: str) -> DeployEnvironment | None:
    query = select(DeployEnvironment).where(DeployEnvironment.org_id == org_id, DeployEnvironment.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def add_environment(session: AsyncSession, org_id: uuid.UUID, name: str) -> DeployEnvironment:
    environment = DeployEnvironment(org_id=org_id, name=name, description="", labels=[])
    session.add(environment)
    await session.flush()
    return environment


def _release_count() -> ScalarSelect[int]:
    return (
        select(func.count())
        .where(DeployRelease.component_id == DeployComponent.id)
        .correlate(DeployComponent)
        .scalar_subquery()
    )


async def list_components(
    session: AsyncSession, org_id: uuid.UUID, project_id: uuid.UUID | None, after: Position | None, limit: int
) -> list[tuple[DeployComponent, int]]:
    query = select(DeployComponent, _release_count()).where(DeployComponent.org_id == org_id)
    if project_id is not None:
        query = query.where(DeployComponent.project_id == project_id)
    if after is not None:
        query = query.where(
            or_(
                DeployComponent.created_at > after[0],
                and_(DeployComponent.created_at == after[0], DeployComponent.id > after[1]),
            )
        )
    query = query.order_by(DeployComponent.created_at, DeployComponent.id).limit(limit)
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def get_component(session: AsyncSession, component_id: uuid.UUID) -> tuple[DeployComponent, int] | None:
    query = select(DeployComponent, _release_count()).where(DeployComponent.id == component_id)
    row = (await session.execute(query)).first()
    return (row[0], row[1]) if row else None


async def find_component(session: AsyncSession, project_id: uuid.UUID, name: str) -> DeployComponent | None:
    query = select(DeployComponent).where(DeployComponent.project_id == project_id, DeployComponent.name == name)
    return (await session.execute(query)).scalar_one_or_none()


async def add_component(session: AsyncSession, org_id: uuid.UUID, project_id: uuid.UUID, name: str) -> DeployComponent:
    component = DeployComponent(org_id=org_id, project_id=project_id, name=name, labels=[])
    session.add(component)
    await session.flush()
    return component


async def successful_releases(
    session: AsyncSession, component_id: uuid.UUID, environment_id: uuid.UUID | None, limit: int
) -> list[DeployRelease]:
    """A component's successful releases, newest first."""
    query = select(DeployRelease).where(DeployRelease.component_id == component_id, DeployRelease.status == "SUCCESS")
    if environment_id is not None:
        query = query.where(DeployRelease.environment_id == environment_id)
    query = query.order_by(DeployRelease.created_at.desc(), DeployRelease.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def add_release(session: AsyncSession, release: DeployRelease) -> DeployRelease:
    session.add(release)
    await session.flush()
    return release


async def latest_release_named(session: AsyncSession, workflow_id: uuid.UUID, name: str) -> DeployRelease | None:
    query = (
        select(DeployRelease)
        .where(DeployRelease.workflow_id == workflow_id, DeployRelease.name == name)
        .order_by(DeployRelease.created_at.desc(), DeployRelease.id.desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


def touch(release: DeployRelease, status: str, failure_reason: str | None) -> None:
    release.status = status
    release.failure_reason = failure_reason
    release.updated_at = utcnow()


async def rollback_definition(session: AsyncSession, project_id: uuid.UUID) -> PipelineDefinition | None:
    """The project's rollback pipeline definition: named ``rollback``, or configured from a
    ``rollback.yml``; the oldest if several."""
    query = (
        select(PipelineDefinition)
        .where(
            PipelineDefinition.project_id == project_id,
            or_(
                func.lower(PipelineDefinition.name) == "rollback",
                PipelineDefinition.config_file_path.like("%rollback.yml"),
            ),
        )
        .order_by(PipelineDefinition.created_at)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def job_context(session: AsyncSession, job_id: uuid.UUID) -> tuple[Job, Project] | None:
    """A job with its project: where a deploy marker of the job belongs."""
    row = (
        await session.execute(select(Job, Project).join(Project, Project.id == Job.project_id).where(Job.id == job_id))
    ).first()
    return (row[0], row[1]) if row else None
