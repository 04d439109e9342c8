"""runner ownership: resource classes owned by organizations, tokens bound to them, runner instances

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 15:20:00.000000
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

import circlet.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

organizations = sa.table(
    "organizations", sa.column("id", sa.Uuid()), sa.column("name_key", sa.String()), sa.column("created_at")
)
classes = sa.table(
    "runner_resource_classes",
    sa.column("id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("namespace", sa.String()),
    sa.column("description", sa.String()),
    sa.column("created_at", circlet.db.types.UTCDateTime()),
)
tokens = sa.table(
    "runner_tokens",
    sa.column("id", sa.Uuid()),
    sa.column("resource_class", sa.String()),
    sa.column("resource_class_id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
    sa.column("created_at", circlet.db.types.UTCDateTime()),
)


def upgrade() -> None:
    op.create_table(
        "runner_resource_classes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=1024), nullable=False),
        sa.Column("created_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_runner_resource_classes_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runner_resource_classes")),
        sa.UniqueConstraint("name", name=op.f("uq_runner_resource_classes_name")),
    )
    with op.batch_alter_table("runner_resource_classes", schema=None) as batch_op:
        batch_op.create_index("ix_runner_resource_classes_org", ["org_id", "name"], unique=False)
    with op.batch_alter_table("runner_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_class_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("org_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_runner_tokens_resource_class_id_runner_resource_classes"),
            "runner_resource_classes",
            ["resource_class_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_runner_tokens_org_id_organizations"), "organizations", ["org_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "runner_instances",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resource_class", sa.String(length=255), nullable=False),
        sa.Column("resource_class_id", sa.Uuid(), nullable=True),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("token_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=255), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", circlet.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", circlet.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resource_class_id"],
            ["runner_resource_classes.id"],
            name=op.f("fk_runner_instances_resource_class_id_runner_resource_classes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_runner_instances_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["runner_tokens.id"],
            name=op.f("fk_runner_instances_token_id_runner_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runner_instances")),
        sa.UniqueConstraint("resource_class", "name", name="uq_runner_instances_class_name"),
    )
    adopt_existing_classes()


def adopt_existing_classes() -> None:
    """Tokens minted before classes had owners: a class whose namespace is the name of exactly one
    organization becomes that organization's, with its tokens; any other stays unowned, and its
    tokens are refused until the operator creates the class and mints new ones."""
    bind = op.get_bind()
    named = bind.execute(
        sa.select(tokens.c.resource_class, sa.func.min(tokens.c.created_at))
        .where(tokens.c.resource_class.like("%/%"))
        .group_by(tokens.c.resource_class)
    ).all()
    for name, created_at in named:
        namespace = name.split("/", 1)[0]
        owners = (
            bind.execute(sa.select(organizations.c.id).where(organizations.c.name_key == namespace)).scalars().all()
        )
        if len(owners) != 1:
            continue
        class_id = uuid.uuid4()
        bind.execute(
            classes.insert().values(
                id=class_id, org_id=owners[0], name=name, namespace=namespace, description="", created_at=created_at
            )
        )
        bind.execute(
            tokens.update().where(tokens.c.resource_class == name).values(resource_class_id=class_id, org_id=owners[0])
        )


def downgrade() -> None:
    op.drop_table("runner_instances")
    with op.batch_alter_table("runner_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_runner_tokens_org_id_organizations"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_runner_tokens_resource_class_id_runner_resource_classes"), type_="foreignkey"
        )
        batch_op.drop_column("org_id")
        batch_op.drop_column("resource_class_id")
    with op.batch_alter_table("runner_resource_classes", schema=None) as batch_op:
        batch_op.drop_index("ix_runner_resource_classes_org")
    op.drop_table("runner_resource_classes")
