"""``Database.fixed_writing``: one transaction of fixed statements, committed once or rolled back."""

from __future__ import annotations

import pytest

from circlet.audit import repository as audit
from circlet.db.dialect import Executor
from circlet.db.engine import Database
from circlet.db.migrate import upgrade_to_head


async def audit_count(database: Database) -> int:
    async with database.reading() as session:
        return len([event async for event in audit.events(session)])


async def record(unit: Executor, action: str) -> None:
    await audit.record(unit, actor_id=None, actor="t", action=action, target_type="t", target_id="x", org_id=None)


async def test_commits_once_or_rolls_back(database: Database) -> None:
    upgrade_to_head(database.url)
    before = await audit_count(database)
    with pytest.raises(RuntimeError):
        async with database.fixed_writing() as unit:
            await record(unit, "first")
            raise RuntimeError("boom")
    assert await audit_count(database) == before
    async with database.fixed_writing() as unit:  # the failed unit left no transaction open
        await record(unit, "second")
        await record(unit, "third")
    assert await audit_count(database) == before + 2
