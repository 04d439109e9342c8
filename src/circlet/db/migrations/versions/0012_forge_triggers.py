"""forge webhooks, deliveries, custom webhook secrets, polled projects

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import circlet.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "project_hook_secrets",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_hook_secrets_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_hook_secrets")),
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("delivery", sa.String(length=255), nullable=False),
        sa.Column("received_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_hook_deliveries_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hook_deliveries")),
        sa.UniqueConstraint("project_id", "delivery", name="uq_hook_deliveries_project_delivery"),
    )
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hook_deliveries_received_at"), ["received_at"], unique=False)
    op.create_table(
        "trigger_webhook_secrets",
        sa.Column("trigger_id", sa.Uuid(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trigger_id"],
            ["pipeline_triggers.id"],
            name=op.f("fk_trigger_webhook_secrets_trigger_id_pipeline_triggers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trigger_id", name=op.f("pk_trigger_webhook_secrets")),
    )
    op.create_table(
        "project_polls",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("every_seconds", sa.Integer(), nullable=False),
        sa.Column("next_poll_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.Column("refs", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_polls_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_project_polls")),
    )
    with op.batch_alter_table("project_polls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_polls_next_poll_at"), ["next_poll_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("project_polls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_polls_next_poll_at"))
    op.drop_table("project_polls")
    op.drop_table("trigger_webhook_secrets")
    with op.batch_alter_table("hook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hook_deliveries_received_at"))
    op.drop_table("hook_deliveries")
    op.drop_table("project_hook_secrets")
