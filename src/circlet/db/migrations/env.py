"""Alembic environment: runs migrations over our async engine, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from circlet.db.engine import create_database
from circlet.db.models import Base

config = context.config


# Several API processes may start at once against one PostgreSQL: one migrates, the others wait.
MIGRATION_LOCK = 7_412_305_118


def run_with(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    database = create_database(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with database.engine.connect() as connection:
            await connection.run_sync(run_with)
            await connection.commit()
    finally:
        await database.dispose()


asyncio.run(run_online())
