"""serial groups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import circlet.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serial_group_holders",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("acquired_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_serial_group_holders_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_serial_group_holders_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_serial_group_holders_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "key", name=op.f("pk_serial_group_holders")),
        sa.UniqueConstraint("job_id", name=op.f("uq_serial_group_holders_job_id")),
    )
    with op.batch_alter_table("serial_group_holders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_serial_group_holders_workflow_id"), ["workflow_id"], unique=False)

    op.create_table(
        "serial_group_waiters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_serial_group_waiters_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_serial_group_waiters_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_serial_group_waiters_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serial_group_waiters")),
        sa.UniqueConstraint("job_id", name=op.f("uq_serial_group_waiters_job_id")),
    )
    with op.batch_alter_table("serial_group_waiters", schema=None) as batch_op:
        batch_op.create_index("ix_serial_group_waiters_group", ["org_id", "key", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("serial_group_waiters", schema=None) as batch_op:
        batch_op.drop_index("ix_serial_group_waiters_group")
    op.drop_table("serial_group_waiters")
    with op.batch_alter_table("serial_group_holders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_serial_group_holders_workflow_id"))
    op.drop_table("serial_group_holders")
