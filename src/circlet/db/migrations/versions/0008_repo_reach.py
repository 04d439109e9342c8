"""what an organization can reach: who set a project's repository, who may create organizations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 15:30:00.000000
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("repo_set_by_operator", sa.Boolean(), nullable=False, server_default=sa.false()))
    # A project the operator created (its audit event has no acting user) keeps the operator's reach;
    # one created through the API is fetched under the new rules from now on.
    connection = op.get_bind()
    audit = sa.table("audit_events", sa.column("action"), sa.column("actor_id"), sa.column("target_id"))
    created = connection.execute(
        sa.select(audit.c.target_id).where(audit.c.action == "project.create", audit.c.actor_id.is_(None))
    )
    ids = [uuid.UUID(row[0]) for row in created]
    projects = sa.table("projects", sa.column("id", sa.Uuid()), sa.column("repo_set_by_operator", sa.Boolean()))
    for start in range(0, len(ids), 500):
        connection.execute(
            sa.update(projects).where(projects.c.id.in_(ids[start : start + 500])).values(repo_set_by_operator=True)
        )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("may_create_orgs", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("may_create_orgs")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("repo_set_by_operator")
