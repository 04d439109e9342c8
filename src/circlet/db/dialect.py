"""The SQLite/PostgreSQL seam: statements whose spelling differs by dialect live here and only here."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, String, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


def insert_for(session: AsyncSession, table: Table) -> Any:
    """An ``INSERT`` that supports ``on_conflict_do_update`` on the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def notify(session: AsyncSession, channel: str, payload: str) -> None:
    """PostgreSQL: ``NOTIFY``, delivered to every listening process when the transaction commits.
    SQLite runs in one process, which signals its waiters itself: nothing to send."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


# -- fixed reads on the driver connection ----------------------------------------------------------
#
# The hottest reads (a page of contexts, a project's variables, a user's organizations) cost several
# times more in SQLAlchemy's statement compilation, execution context and result processing than in
# the database. They are written once as plain SQL in their repository (``?`` placeholders) and run
# here on the driver's connection; what differs between the databases (placeholders, how UUIDs and
# times are stored, which connection to use) is handled here and only here.

UUID = "uuid"  # SQLite: 32 hex characters (SQLAlchemy's ``Uuid``); PostgreSQL: uuid
TIME = "time"  # SQLite: naive UTC text (SQLAlchemy's ``DATETIME``); PostgreSQL: timestamp; aware UTC in Python
PLAIN = "plain"  # text, numbers, bytes: the same on both
# A time read only to be written into a response: the RFC 3339 text CircleCI writes
# (``circlet.http.responses.timestamp``: ``YYYY-MM-DDTHH:MM:SS.mmmZ``), with no ``datetime`` in between
# on SQLite, whose stored text already holds those characters. Result columns only.
STAMP = "stamp"


@dataclass(frozen=True)
class RawQuery:
    """A fixed statement with ``?`` placeholders, the kinds of its parameters and of its result columns."""

    sql: str
    params: tuple[str, ...]
    columns: tuple[str, ...]
    numbered_sql: str = field(init=False)  # PostgreSQL's spelling: $1, $2, ...

    def __post_init__(self) -> None:
        parts = self.sql.split("?")
        if len(parts) - 1 != len(self.params):
            raise ValueError(f"{len(parts) - 1} placeholders for {len(self.params)} parameters: {self.sql}")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        object.__setattr__(self, "numbered_sql", numbered)


def _sqlite_param(kind: str, value: Any) -> Any:
    if value is None or kind == PLAIN:
        return value
    if kind == UUID:
        return value.hex
    if value.tzinfo is not None:
        # a time already in UTC is only stripped of its zone: astimezone costs several times that
        value = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
    # exactly how SQLAlchemy's SQLite DATETIME writes it ("2025-01-01 00:00:09.001000", always six
    # digits of microseconds), so that stored and compared text agree; isoformat is strftime's third
    return value.isoformat(" ", "microseconds")


def _postgresql_param(kind: str, value: Any) -> Any:
    if kind == TIME and value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


_new_object = object.__new__
_set_slot = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _sqlite_uuid(value: Any) -> Any:
    # What ``uuid.UUID(value)`` builds, without its parsing of every spelling of a UUID (braces, urn:,
    # dashes): the column holds exactly 32 hex digits, written by SQLAlchemy's Uuid type. Three times
    # faster, and a page converts 21 of them.
    if value is None:
        return None
    result = _new_object(uuid.UUID)
    _set_slot(result, "int", int(value, 16))
    _set_slot(result, "is_safe", _SAFE_UNKNOWN)
    return result


def _sqlite_time(value: Any) -> Any:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _sqlite_stamp(value: Any) -> Any:
    # SQLAlchemy's SQLite DATETIME writes "2025-01-01 00:00:09.001000" (always six digits of
    # microseconds): its first 23 characters, "T" for the space, are what ``timestamp`` makes of the
    # ``datetime`` (isoformat truncates to milliseconds, as the cut does). Any other spelling goes the
    # long way, through the ``datetime``.
    if value is None:
        return None
    if len(value) == 26 and value[10] == " " and value[19] == ".":
        return value[:10] + "T" + value[11:23] + "Z"
    return _rfc3339(_sqlite_time(value))


def _rfc3339(value: datetime) -> str:
    # exactly circlet.http.responses.timestamp (the database layer does not import the HTTP one)
    return value.isoformat(timespec="milliseconds")[:23] + "Z"


def _postgresql_stamp(value: Any) -> Any:
    return None if value is None else _rfc3339(value)


def _postgresql_uuid(value: Any) -> Any:
    # asyncpg's own UUID subclass, made a plain uuid.UUID as SQLAlchemy's Uuid type returns it
    return None if value is None or type(value) is uuid.UUID else uuid.UUID(bytes=value.bytes)


def _postgresql_time(value: Any) -> Any:
    return None if value is None else value.replace(tzinfo=UTC)


_CONVERTERS = {
    "sqlite": {UUID: _sqlite_uuid, TIME: _sqlite_time, STAMP: _sqlite_stamp},
    "postgresql": {UUID: _postgresql_uuid, TIME: _postgresql_time, STAMP: _postgresql_stamp},
}


def _convert(rows: list[Any], kinds: tuple[str, ...], dialect: str) -> list[tuple[Any, ...]]:
    converters = _CONVERTERS[dialect]
    plan = [(i, converters[kind]) for i, kind in enumerate(kinds) if kind != PLAIN]
    if not plan:
        return [tuple(row) for row in rows]
    converted = []
    for row in rows:
        values = list(row)
        for i, convert in plan:
            values[i] = convert(values[i])
        converted.append(tuple(values))
    return converted


def convert_value(session: Executor, kind: str, value: Any) -> Any:
    """A value read as ``PLAIN`` (the driver's own), converted as a column of ``kind`` would have been:
    for a column a query needs in that form in one row only (a page's last time, for its token)."""
    if kind == PLAIN:
        return value
    dialect = "sqlite" if type(session) is SqliteWriteUnit else _dialect_name(session)  # type: ignore[arg-type]
    return _CONVERTERS[dialect][kind](value)


def _dialect_name(session: AsyncSession) -> str:
    bind = session.bind
    assert bind is not None, "sessions are bound to the engine"
    return bind.dialect.name


class SqliteWriteUnit:
    """A write transaction straight on a SQLite connection (``Database.fixed_writing``): fixed statements
    only, no ORM session. What it runs commits once at the end, or rolls back."""

    __slots__ = ("connection",)

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection


# What the fixed statements run on: a session (its transaction, or the shared reader on SQLite), or a
# fixed write unit (``Database.fixed_writing``), which is a session's on PostgreSQL.
Executor = AsyncSession | SqliteWriteUnit


async def fetch_all(session: Executor, query: RawQuery, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``query`` as tuples of Python values (UUIDs, aware UTC datetimes), as SQLAlchemy
    would have returned them.

    SQLite: a read session that has not begun a transaction reads through the database's shared
    reader connection (``SqliteReader``): opening the session's own connection and transaction costs
    as much as the query. Each such statement sees the latest committed data, as each statement of a
    PostgreSQL transaction does at its default isolation (read committed). Any other session, and
    every write session, reads on its own connection, inside its transaction.
    PostgreSQL: the SQL on the session's connection, with numbered placeholders."""
    if type(session) is SqliteWriteUnit:
        params = [_sqlite_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        return _convert(session.connection.execute(query.sql, params).fetchall(), query.columns, "sqlite")
    assert isinstance(session, AsyncSession)
    dialect = _dialect_name(session)
    if dialect == "sqlite":
        params = [_sqlite_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        reader = session.info.get(SQLITE_READER)
        if reader is not None and not session.in_transaction():
            rows = reader.fetch_all(query.sql, params)
        else:
            rows = (await _sqlite_connection(session)).execute(query.sql, params).fetchall()
    else:
        params = [_postgresql_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        connection = await session.connection()
        rows = (await connection.exec_driver_sql(query.numbered_sql, tuple(params))).all()
    return _convert(rows, query.columns, dialect)


async def execute(session: Executor, query: RawQuery, *args: Any) -> None:
    """A fixed statement that returns no rows, in the session's transaction."""
    if type(session) is SqliteWriteUnit:
        params = [_sqlite_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        session.connection.execute(query.sql, params)
        return
    assert isinstance(session, AsyncSession)
    if _dialect_name(session) == "sqlite":
        params = [_sqlite_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        (await _sqlite_connection(session)).execute(query.sql, params)
    else:
        params = [_postgresql_param(kind, value) for kind, value in zip(query.params, args, strict=True)]
        connection = await session.connection()
        await connection.exec_driver_sql(query.numbered_sql, tuple(params))


_SQLITE_CONNECTION = "circlet.sqlite_connection"


async def _sqlite_connection(session: AsyncSession) -> sqlite3.Connection:
    """The sqlite3 connection under the session's transaction (begun here if need be). Remembered
    for that transaction: asking SQLAlchemy for it costs more than a short statement, and a write
    runs three or four of them."""
    transaction = session.sync_session.get_transaction()
    remembered = session.info.get(_SQLITE_CONNECTION)
    if transaction is not None and remembered is not None and remembered[0] is transaction:
        return remembered[1]  # type: ignore[no-any-return]
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: sqlite3.Connection = raw.driver_connection._conn  # type: ignore[union-attr]
    session.info[_SQLITE_CONNECTION] = (session.sync_session.get_transaction(), driver)
    return driver


SQLITE_READER = "circlet.sqlite_reader"


class SqliteReader:
    """One autocommit SQLite connection for the fixed reads of read sessions (see ``fetch_all``).

    Safe to share: SQLite calls run on the event loop's thread (``InlineSqliteConnection``), and a
    fixed read runs to its end (``fetchall``) without giving the loop a turn, so no two reads ever
    interleave on it; in WAL mode it never waits for a writer."""

    def __init__(self, database: str, uri: bool):
        self._database, self._uri = database, uri
        self._connection: sqlite3.Connection | None = None

    def fetch_all(self, sql: str, params: list[Any]) -> list[Any]:
        connection = self._connection
        if connection is None:
            connection = self._connection = sqlite3.connect(
                self._database, uri=self._uri, isolation_level=None, check_same_thread=False, timeout=30
            )
            connection.execute("PRAGMA query_only=ON")
        return connection.execute(sql, params).fetchall()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SqliteWriter:
    """The SQLite connection of fixed write units (``Database.fixed_writing``), tuned as the engine's
    connections are (``circlet.db.engine``). Writers of this process take turns on the database's write
    lock, so only one unit uses it at a time, and SQLite calls run on the loop's thread."""

    def __init__(self, database: str, uri: bool, busy_timeout_seconds: int):
        self._database, self._uri, self._timeout = database, uri, busy_timeout_seconds
        self._connection: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            connection = sqlite3.connect(
                self._database, uri=self._uri, isolation_level=None, check_same_thread=False, timeout=self._timeout
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA busy_timeout={self._timeout * 1000}")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA wal_autocheckpoint=0")  # circlet.db.engine.SqliteCheckpointer does it
            self._connection = connection
        return connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# -- time arithmetic for aggregates (insights) ------------------------------------------------------
#
# SQLite stores times as naive UTC text and has no interval type; PostgreSQL has timestamps. The
# insights queries aggregate durations and bucket times in SQL, so the two spellings live here.


class seconds_between(FunctionElement[float]):  # noqa: N801 - used as a SQL function
    """``end - start`` in seconds, as a float (NULL if either is NULL)."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    # julianday's doubles carry ~40 µs of error at today's dates: rounded to the millisecond, which
    # the stored times hold exactly, so both databases give the same seconds.
    return (
        f"ROUND((julianday({compiler.process(end, **kw)}) - julianday({compiler.process(start, **kw)})) * 86400.0, 3)"
    )


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element: seconds_between, compiler: Any, **kw: Any) -> str:
    start, end = list(element.clauses)
    return f"EXTRACT(EPOCH FROM ({compiler.process(end, **kw)} - {compiler.process(start, **kw)}))::float8"


class hour_start(FunctionElement[str]):  # noqa: N801 - used as a SQL function
    """The start of the hour a time falls in, as ``YYYY-MM-DD HH:00:00`` text on both databases."""

    type = String()
    inherit_cache = True
    name = "hour_start"


class day_start(FunctionElement[str]):  # noqa: N801 - used as a SQL function
    """The start of the day a time falls in, as ``YYYY-MM-DD 00:00:00`` text on both databases."""

    type = String()
    inherit_cache = True
    name = "day_start"


@compiles(hour_start, "sqlite")
def _hour_start_sqlite(element: hour_start, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d %H:00:00', {compiler.process(element.clauses, **kw)})"


@compiles(day_start, "sqlite")
def _day_start_sqlite(element: day_start, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m-%d 00:00:00', {compiler.process(element.clauses, **kw)})"


@compiles(hour_start, "postgresql")
def _hour_start_postgresql(element: hour_start, compiler: Any, **kw: Any) -> str:
    return f"to_char(date_trunc('hour', {compiler.process(element.clauses, **kw)}), 'YYYY-MM-DD HH24:00:00')"


@compiles(day_start, "postgresql")
def _day_start_postgresql(element: day_start, compiler: Any, **kw: Any) -> str:
    return f"to_char(date_trunc('day', {compiler.process(element.clauses, **kw)}), 'YYYY-MM-DD 00:00:00')"
