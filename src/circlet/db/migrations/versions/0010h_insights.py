"""indexes for the Insights aggregates; usage exports

Revision ID: 0010h
Revises: 0009
Create Date: 2026-12-04 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from circlet.db.types import UTCDateTime

revision = "0010h"
down_revision = "0009"
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


def downgrade() -> None:
    op.drop_index("ix_usage_exports_org", "usage_exports")
    op.drop_table("usage_exports")
    op.drop_index("ix_jobs_project_started", "jobs")
    op.drop_index("ix_workflows_project_name_created", "workflows")
    op.drop_index("ix_workflows_project_created", "workflows")
