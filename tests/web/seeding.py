"""Many pipelines at once, written straight to the tables (as a long-lived server would have them):
for the statement counts of the list pages and the benchmark, where triggering each through the API
and the compiler would take minutes."""

from __future__ import annotations

import uuid
from datetime import timedelta

from circlet.db.engine import Database
from circlet.db.models import Pipeline, Project, Workflow
from circlet.db.types import utcnow

STATUSES = ("success", "failed", "running", "on_hold", "canceled")


async def seed_pipelines(
    database: Database,
    project_id: uuid.UUID,
    count: int,
    *,
    actor_id: uuid.UUID | None,
    first_number: int = 1,
    branch: str | None = None,
) -> None:
    start = utcnow() - timedelta(seconds=count)
    async with database.writing() as session:
        for offset in range(count):
            created = start + timedelta(seconds=offset)
            pipeline_id = uuid.uuid4()
            session.add(
                Pipeline(
                    id=pipeline_id,
                    project_id=project_id,
                    number=first_number + offset,
                    state="created",
                    trigger_type="api",
                    actor_id=actor_id,
                    branch=branch or ("main" if offset % 3 else "feature"),
                    revision=f"{offset:040x}",
                    commit_subject=f"change {offset}",
                    created_at=created,
                    updated_at=created,
                )
            )
            status = STATUSES[offset % len(STATUSES)]
            session.add(
                Workflow(
                    id=uuid.uuid4(),
                    pipeline_id=pipeline_id,
                    project_id=project_id,
                    name="build",
                    status=status,
                    created_at=created,
                    stopped_at=None if status in ("running", "on_hold") else created + timedelta(seconds=42),
                )
            )


async def project_id_of(database: Database, org_name: str, name: str) -> uuid.UUID:
    from sqlalchemy import select

    from circlet.db.models import Organization

    async with database.reading() as session:
        found = await session.execute(
            select(Project.id)
            .join(Organization, Organization.id == Project.org_id)
            .where(Organization.name == org_name, Project.name == name)
        )
        return found.scalar_one()
