"""compile attempts of a pipeline, step output bytes of a task

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipelines") as batch:
        batch.add_column(sa.Column("compile_attempts", sa.Integer(), server_default="1", nullable=False))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("output_bytes", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("output_bytes")
    with op.batch_alter_table("pipelines") as batch:
        batch.drop_column("compile_attempts")
