"""The SQLite/PostgreSQL seam: statements whose spelling differs by dialect live here and only here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession, table: Table) -> Any:
    """An ``INSERT`` that supports ``on_conflict_do_update`` on the session's dialect."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def notify(session: AsyncSession, channel: str, payload: str) -> None:
    """PostgreSQL: ``NOTIFY``, delivered to every listening process when the transaction commits.
    SQLite runs in one process, which signals its waiters itself: nothing to send."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})
