"""Migration 0008: projects the operator created keep the operator's reach; API-created ones do not."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from circlet.db.migrate import alembic_config
from circlet.db.types import UTCDateTime, utcnow

ORGS = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("vcs_type", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
PROJECTS = sa.table(
    "projects",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("vcs_url", sa.String()),
    sa.column("default_branch", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
AUDIT = sa.table(
    "audit_events",
    sa.column("at", UTCDateTime()),
    sa.column("actor_id", sa.Uuid()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_type", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("details", sa.JSON()),
)


def test_upgrade_marks_only_operator_created_projects(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    migrations = alembic_config(f"sqlite+aiosqlite:///{path}")
    command.upgrade(migrations, "0006")
    org, by_operator, by_api = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(
            sa.insert(ORGS).values(id=org, name="o", name_key="o", vcs_type="github", created_at=utcnow())
        )
        for project_id, name, actor_id in ((by_operator, "local", None), (by_api, "api", uuid.uuid4())):
            connection.execute(
                sa.insert(PROJECTS).values(
                    id=project_id,
                    org_id=org,
                    name=name,
                    name_key=name,
                    vcs_url="/srv/" + name,
                    default_branch="main",
                    created_at=utcnow(),
                )
            )
            connection.execute(
                sa.insert(AUDIT).values(
                    at=utcnow(),
                    actor_id=actor_id,
                    actor="someone",
                    action="project.create",
                    target_type="project",
                    target_id=str(project_id),
                    details={},
                )
            )
    command.upgrade(migrations, "head")
    with engine.connect() as connection:
        flags = dict(connection.execute(sa.text("SELECT name, repo_set_by_operator FROM projects")).all())
        users = connection.execute(sa.text("SELECT count(*) FROM users WHERE may_create_orgs")).scalar_one()
    engine.dispose()
    assert flags == {"local": 1, "api": 0}
    assert users == 0
