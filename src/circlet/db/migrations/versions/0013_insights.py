"""indexes for the Insights aggregates; usage exports; deploy environments, components and releases

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:45:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from circlet.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A project's (or one workflow's) runs in a reporting window; a time series' job runs by start.
    op.create_index("ix_workflows_project_created", "workflows", ["project_id", "created_at"])
    op.create_index("ix_workflows_project_name_created", "workflows", ["project_id", "name", "created_at"])
    op.create_index("ix_jobs_project_started", "jobs", ["project_id", "started_at"])
    op.create_table(
        "usage_exports",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "org_id",
            sa.Uuid(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE", name="fk_usage_exports_org_id_organizations"),
            nullable=False,
        ),
        sa.Column("requested_by", sa.Uuid(), nullable=True),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("shared_org_ids", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error_reason", sa.Text(), nullable=True),
        sa.Column("blob_ids", sa.JSON(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_exports"),
    )
    op.create_index("ix_usage_exports_org", "usage_exports", ["org_id", "created_at"])
    _deploy_tables()


def _fk(column: str, table: str, target: str) -> sa.Column[Any]:
    return sa.Column(
        column,
        sa.Uuid(),
        sa.ForeignKey(f"{target}.id", ondelete="CASCADE", name=f"fk_{table}_{column}_{target}"),
        nullable=False,
    )


def _deploy_tables() -> None:
    stamps: tuple[sa.Column[Any], ...] = (
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "deploy_environments",
        sa.Column("id", sa.Uuid(), nullable=False),
        _fk("org_id", "deploy_environments", "organizations"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        *[c._copy() for c in stamps],
        sa.PrimaryKeyConstraint("id", name="pk_deploy_environments"),
        sa.UniqueConstraint("org_id", "name", name="uq_deploy_environments_org_name"),
    )
    op.create_index("ix_deploy_environments_org_created", "deploy_environments", ["org_id", "created_at", "id"])
    op.create_table(
        "deploy_components",
        sa.Column("id", sa.Uuid(), nullable=False),
        _fk("org_id", "deploy_components", "organizations"),
        _fk("project_id", "deploy_components", "projects"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        *[c._copy() for c in stamps],
        sa.PrimaryKeyConstraint("id", name="pk_deploy_components"),
        sa.UniqueConstraint("project_id", "name", name="uq_deploy_components_project_name"),
    )
    op.create_index("ix_deploy_components_org_created", "deploy_components", ["org_id", "created_at", "id"])
    op.create_table(
        "deploy_releases",
        sa.Column("id", sa.Uuid(), nullable=False),
        _fk("component_id", "deploy_releases", "deploy_components"),
        _fk("environment_id", "deploy_releases", "deploy_environments"),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("pipeline_id", sa.Uuid(), nullable=True),
        sa.Column("workflow_id", sa.Uuid(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("job_number", sa.Integer(), nullable=True),
        sa.Column("rollback_of", sa.String(255), nullable=True),
        *[c._copy() for c in stamps],
        sa.PrimaryKeyConstraint("id", name="pk_deploy_releases"),
    )
    op.create_index("ix_deploy_releases_component", "deploy_releases", ["component_id", "environment_id", "created_at"])
    op.create_index("ix_deploy_releases_workflow_name", "deploy_releases", ["workflow_id", "name"])


def downgrade() -> None:
    op.drop_table("deploy_releases")
    op.drop_table("deploy_components")
    op.drop_table("deploy_environments")
    op.drop_index("ix_usage_exports_org", "usage_exports")
    op.drop_table("usage_exports")
    op.drop_index("ix_jobs_project_started", "jobs")
    op.drop_index("ix_workflows_project_name_created", "workflows")
    op.drop_index("ix_workflows_project_created", "workflows")
