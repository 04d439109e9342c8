"""Migration 0007 gives runner tokens minted before classes had owners to the organization their
namespace names, when exactly one organization has that name; every other token stays unowned."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from circlet.db.migrate import alembic_config
from circlet.db.types import UTCDateTime

organizations = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("vcs_type", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
tokens = sa.table(
    "runner_tokens",
    sa.column("id", sa.Uuid()),
    sa.column("resource_class", sa.String()),
    sa.column("token_hash", sa.String()),
    sa.column("label", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("resource_class_id", sa.Uuid()),
    sa.column("org_id", sa.Uuid()),
)


def test_existing_tokens_are_given_to_the_organization_their_namespace_names(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    command.upgrade(alembic_config(f"sqlite+aiosqlite:///{path}"), "0006")
    engine = sa.create_engine(f"sqlite:///{path}")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    acme, twin_gh, twin_bb = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with engine.begin() as connection:
        for org_id, name, vcs in (
            (acme, "Acme", "github"),
            (twin_gh, "twin", "github"),
            (twin_bb, "twin", "bitbucket"),
        ):
            connection.execute(
                organizations.insert().values(id=org_id, name=name, name_key=name.lower(), vcs_type=vcs, created_at=now)
            )
        for resource_class in ("acme/linux", "acme/linux", "twin/x", "ghost/y", "local"):
            connection.execute(
                tokens.insert().values(
                    id=uuid.uuid4(),
                    resource_class=resource_class,
                    token_hash=uuid.uuid4().hex,
                    label="",
                    created_at=now,
                )
            )
    command.upgrade(alembic_config(f"sqlite+aiosqlite:///{path}"), "head")
    with engine.connect() as connection:
        classes = connection.execute(sa.text("SELECT name, namespace, org_id FROM runner_resource_classes")).all()
        assert [(name, namespace, uuid.UUID(org_id)) for name, namespace, org_id in classes] == [
            ("acme/linux", "acme", acme)
        ]
        owned = connection.execute(
            sa.select(tokens.c.resource_class, tokens.c.org_id).order_by(tokens.c.resource_class)
        ).all()
    engine.dispose()
    assert owned == [("acme/linux", acme), ("acme/linux", acme), ("ghost/y", None), ("local", None), ("twin/x", None)]
