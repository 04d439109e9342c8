"""Engine setup and the one seam where SQLite and PostgreSQL differ."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from circlet.db.dialect import SQLITE_READER, Executor, SqliteReader, SqliteWriter, SqliteWriteUnit

SQLITE_BUSY_TIMEOUT_SECONDS = 30
IDLE_READ_SESSIONS = 64
CHECKPOINT_INTERVAL_SECONDS = 0.5


class SqliteCheckpointer:
    """Copies the WAL back into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages, fsync
    included; our SQLite calls run on the event loop's thread, so every ~4 MB written stalled every
    request for that fsync (storing 50 MB of step output: a fifth of the server's time). The
    connections of a ``Database`` turn it off (``wal_autocheckpoint=0``) and this thread runs a
    PASSIVE checkpoint every half second instead: it never waits for, nor blocks, readers and
    writers, and the sqlite3 module releases the GIL while SQLite works."""

    def __init__(self, database: str, uri: bool) -> None:
        self._database, self._uri = database, uri
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._database, uri=self._uri, isolation_level=None)
        except sqlite3.Error:
            return  # no file to checkpoint (its directory is gone): the connections will say so
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_SECONDS):
                self.checkpoint(connection)
            self.checkpoint(connection)
        finally:
            connection.close()

    @staticmethod
    def checkpoint(connection: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):  # e.g. the file was removed: the next round tries again
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _tune_sqlite(engine: AsyncEngine) -> None:
    """WAL for concurrent readers, a busy timeout instead of 'database is locked', and transactions
    we begin ourselves, so that writers can take the write lock up front (``BEGIN IMMEDIATE``) and
    never fail half-way through on a lock upgrade."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # SqliteCheckpointer does it, off the loop
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.connection.driver_connection.begin(mode)


class InlineSqliteConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs each SQLite call on the event loop's thread.

    aiosqlite hands every call (cursor, execute, fetch, close, commit) to a worker thread and back,
    several hops a query; under load the hops, and the GIL passed back and forth with them, cost more
    than the queries (SQLite answers a page of contexts in ~0.02 ms). Run inline, a call blocks the loop
    only as long as SQLite works: reads never wait in WAL mode, and writers in this process wait for
    each other on ``Database.writing``'s lock, outside SQLite, so the only wait left inside SQLite is
    on another process's short write transaction (the admin CLI), bounded by ``busy_timeout``.
    ``_execute`` is the one funnel all of aiosqlite's calls go through; the worker thread remains
    for opening the connection only."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def begin(self, mode: str) -> None:
        """``BEGIN`` straight on the SQLite connection: sent as a statement through SQLAlchemy
        (``exec_driver_sql``) it costs as much as the query that follows it."""
        self._conn.execute(f"BEGIN {mode}")


def _inline_sqlite_creator(url: str, connect_args: dict[str, Any]) -> Callable[[], Any]:
    """An ``async_creator`` opening what SQLAlchemy would open for ``url``, as an inline connection."""
    parsed = make_url(url)
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    kwargs.update(connect_args)

    def open_sqlite() -> sqlite3.Connection:
        return sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    async def connect() -> InlineSqliteConnection:
        connection = InlineSqliteConnection(open_sqlite, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        await connection
        return connection

    return connect


@dataclass
class Database:
    """One engine and two session factories: reads, and writes that take the write lock first."""

    url: str
    engine: AsyncEngine
    read_sessions: async_sessionmaker[AsyncSession]
    write_sessions: async_sessionmaker[AsyncSession]
    # SQLite has one writer at a time: writers of this process queue here, on the event loop,
    # rather than in SQLite's busy handler (which, with inline connections, would block the loop).
    _write_lock: asyncio.Lock | None = field(default=None, repr=False)
    # SQLite, on a file: the connection of the fixed reads of read sessions (circlet.db.dialect.fetch_all).
    sqlite_reader: SqliteReader | None = field(default=None, repr=False)
    _idle_readers: list[AsyncSession] = field(default_factory=list, repr=False)
    # SQLite, on a file: the connection of fixed write units (``fixed_writing``).
    sqlite_writer: SqliteWriter | None = field(default=None, repr=False)
    # SQLite, on a file: the thread that checkpoints the WAL (none for an in-memory database).
    sqlite_checkpointer: SqliteCheckpointer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.is_sqlite:
            self._write_lock = asyncio.Lock()

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite(self.url)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        if not self.is_sqlite:
            async with self._session(self.read_sessions) as session:
                yield session
            return
        # SQLite: read sessions are reused once closed (a closed session holds nothing: no connection,
        # no objects), because making one costs as much as a fixed read on the shared reader, which
        # is all the hottest requests do with it. As in ``_session``, the inline close is awaited
        # directly.
        idle = self._idle_readers
        session = idle.pop() if idle else self.read_sessions()
        try:
            yield session
        finally:
            # A session that only ran fixed reads on the shared reader began no transaction and holds
            # no object: closing it would change nothing, and cost a greenlet round trip (a tenth of a
            # list request). Any other session is closed.
            if session.in_transaction() or session.identity_map or session.new:
                await session.close()
            if len(idle) < IDLE_READ_SESSIONS:
                idle.append(session)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits once at the end, rolls back on any error."""
        async with self._write_turn(), self._session(self.write_sessions) as session, session.begin():
            yield session

    @asynccontextmanager
    async def fixed_writing(self) -> AsyncIterator[Executor]:
        """A unit of work made only of fixed statements (``circlet.db.dialect``): commits once at the end,
        rolls back on any error. On SQLite (a file), ``BEGIN IMMEDIATE``/``COMMIT`` straight on the
        writer connection, in this process's turn to write, with no ORM session: for a write of three
        or four short statements the session's transaction cost more than they do. Elsewhere, a
        ``writing`` session."""
        writer = self.sqlite_writer
        if writer is None:
            async with self.writing() as session:
                yield session
            return
        async with self._write_turn():
            connection = writer.connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteWriteUnit(connection)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # an error in the unit, or a COMMIT that failed
                    connection.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        """On SQLite, this process's turn to write: waits as long as SQLite's busy timeout would,
        then fails as SQLite would."""
        if self._write_lock is None:
            yield
            return
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_SECONDS):
                await self._write_lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        try:
            yield
        finally:
            self._write_lock.release()

    @asynccontextmanager
    async def _session(self, factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        """A session, closed on the way out.

        ``async with session`` closes it in a task of its own, shielded from cancellation, which
        costs a trip round the event loop with the connection still checked out; under load that
        keeps up to one connection per request in flight. An inline SQLite connection (above)
        never suspends while closing, so no cancellation can cut the close short and we await it
        directly. Other databases keep SQLAlchemy's shielded close."""
        if not self.is_sqlite:
            async with factory() as session:
                yield session
            return
        session = factory()
        try:
            yield session
        finally:
            await session.close()

    async def dispose(self) -> None:
        if self.sqlite_checkpointer is not None:
            self.sqlite_checkpointer.close()
        if self.sqlite_reader is not None:
            self.sqlite_reader.close()
        if self.sqlite_writer is not None:
            self.sqlite_writer.close()
        await self.engine.dispose()


def create_database(url: str, *, pool_size: int = 8) -> Database:
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
        kwargs["async_creator"] = _inline_sqlite_creator(url, connect_args)
    else:
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_size
    engine = create_async_engine(url, pool_pre_ping=not is_sqlite(url), **kwargs)
    write_engine = engine
    reader = None
    if is_sqlite(url):
        _tune_sqlite(engine)
        write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        reader = _sqlite_reader(url)
    return Database(
        url=url,
        engine=engine,
        read_sessions=async_sessionmaker(
            engine, expire_on_commit=False, info={SQLITE_READER: reader} if reader is not None else None
        ),
        write_sessions=async_sessionmaker(write_engine, expire_on_commit=False),
        sqlite_reader=reader,
        sqlite_writer=_sqlite_writer(url) if reader is not None else None,
        sqlite_checkpointer=_sqlite_checkpointer(url) if reader is not None else None,
    )


def _sqlite_file(url: str) -> tuple[str, bool] | None:
    """The SQLite file of ``url`` and whether it is a URI; none for an in-memory database, which a
    second connection would not see."""
    parsed = make_url(url)
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    database = str(args[0]) if args else ""
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    return database, bool(kwargs.get("uri"))


def _sqlite_writer(url: str) -> SqliteWriter | None:
    file = _sqlite_file(url)
    return None if file is None else SqliteWriter(*file, SQLITE_BUSY_TIMEOUT_SECONDS)


def _sqlite_checkpointer(url: str) -> SqliteCheckpointer | None:
    file = _sqlite_file(url)
    return None if file is None else SqliteCheckpointer(*file)


def _sqlite_reader(url: str) -> SqliteReader | None:
    """A shared reader on the same file; none for an in-memory database."""
    file = _sqlite_file(url)
    return None if file is None else SqliteReader(*file)
