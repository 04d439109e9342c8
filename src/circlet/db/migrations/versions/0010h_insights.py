"""indexes for the Insights aggregates

Revision ID: 0010h
Revises: 0009
Create Date: 2026-12-04 18:45:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0010h"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A project's (or one workflow's) runs in a reporting window; a time series' job runs by start.
    op.create_index("ix_workflows_project_created", "workflows", ["project_id", "created_at"])
    op.create_index("ix_workflows_project_name_created", "workflows", ["project_id", "name", "created_at"])
    op.create_index("ix_jobs_project_started", "jobs", ["project_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_project_started", "jobs")
    op.drop_index("ix_workflows_project_name_created", "workflows")
    op.drop_index("ix_workflows_project_created", "workflows")
