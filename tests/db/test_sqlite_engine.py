"""The SQLite engine: calls run inline on the event loop's thread, writers of the process take
turns on the loop, readers never wait for them."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from circlet.db import engine
from circlet.db.engine import Database, InlineSqliteConnection, create_database


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = create_database(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    async with database.writing() as session:
        await session.execute(text("CREATE TABLE numbers (n INTEGER NOT NULL)"))
    yield database
    await database.dispose()


async def count(database: Database) -> int:
    async with database.reading() as session:
        return int((await session.execute(text("SELECT count(*) FROM numbers"))).scalar_one())


async def test_sqlite_runs_on_the_event_loop_thread(sqlite_db: Database) -> None:
    async with sqlite_db.reading() as session:
        raw = await (await session.connection()).get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, InlineSqliteConnection)
        await driver.create_function("thread_id", 0, threading.get_ident)
        ran_on = (await session.execute(text("SELECT thread_id()"))).scalar_one()
    assert ran_on == threading.get_ident()


async def test_concurrent_writers_take_turns(sqlite_db: Database) -> None:
    async def write(n: int) -> None:
        async with sqlite_db.writing() as session:
            await session.execute(text("INSERT INTO numbers (n) VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.001)  # another writer gets the loop while this one holds the lock
            await session.execute(text("INSERT INTO numbers (n) VALUES (:n)"), {"n": -n})

    await asyncio.gather(*(write(n) for n in range(1, 21)))
    assert await count(sqlite_db) == 40


async def test_a_failed_unit_of_work_rolls_back_and_frees_the_turn(sqlite_db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sqlite_db.writing() as session:
            await session.execute(text("INSERT INTO numbers (n) VALUES (1)"))
            raise RuntimeError("boom")
    async with sqlite_db.writing() as session:
        await session.execute(text("INSERT INTO numbers (n) VALUES (2)"))
    assert await count(sqlite_db) == 1


async def test_readers_do_not_wait_for_a_writer(sqlite_db: Database) -> None:
    inserted, release = asyncio.Event(), asyncio.Event()

    async def slow_writer() -> None:
        async with sqlite_db.writing() as session:
            await session.execute(text("INSERT INTO numbers (n) VALUES (1)"))
            inserted.set()
            await release.wait()

    writer = asyncio.create_task(slow_writer())
    await inserted.wait()
    assert await asyncio.wait_for(count(sqlite_db), timeout=5) == 0  # the last committed state
    release.set()
    await writer
    assert await count(sqlite_db) == 1


async def test_waiting_for_the_write_turn_times_out_as_sqlite_would(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.05)
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with sqlite_db.writing():
            holding.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await holding.wait()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        async with sqlite_db.writing():
            pass
    release.set()
    await task


async def test_commits_leave_the_wal_to_the_checkpoint_thread(tmp_path: Path) -> None:
    """No COMMIT on the loop's thread copies the WAL into the file (SQLite's automatic checkpoint
    is off); the checkpoint thread does, soon after."""
    path = tmp_path / "wal.db"
    database = create_database(f"sqlite+aiosqlite:///{path}")
    assert database.sqlite_checkpointer is not None
    database.sqlite_checkpointer.close()  # stopped: only the commits below could checkpoint
    try:
        async with database.writing() as session:
            await session.execute(text("CREATE TABLE blobs (data BLOB NOT NULL)"))
        for _ in range(8):  # 8 MB: 2,000 pages, twice SQLite's automatic checkpoint threshold
            async with database.writing() as session:
                await session.execute(text("INSERT INTO blobs VALUES (randomblob(1048576))"))
        assert path.stat().st_size < 1024 * 1024
        assert Path(f"{path}-wal").stat().st_size > 8 * 1024 * 1024

        checkpointer = engine.SqliteCheckpointer(str(path), False)
        try:
            for _ in range(100):
                if path.stat().st_size > 8 * 1024 * 1024:
                    break
                await asyncio.sleep(0.05)
            assert path.stat().st_size > 8 * 1024 * 1024
        finally:
            checkpointer.close()
    finally:
        await database.dispose()
