"""The ``STAMP`` column kind: a stored time read straight into the response's RFC 3339 text, exactly as
``timestamp`` writes the ``datetime`` the ``TIME`` kind reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from circlet.db import dialect
from circlet.db.dialect import STAMP, TIME, UUID, RawQuery, fetch_all
from circlet.db.engine import Database
from circlet.db.migrate import upgrade_to_head
from circlet.db.models import Organization
from circlet.http.responses import timestamp

TIMES = [
    datetime(2025, 1, 1, tzinfo=UTC),
    datetime(2025, 1, 1, 0, 0, 9, 1_000, tzinfo=UTC),
    datetime(2025, 6, 30, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 30, 5, 123_456, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 500, tzinfo=UTC),
    datetime(2030, 10, 5, 7, 8, 9, 10, tzinfo=UTC),
    datetime(5, 1, 2, 3, 4, 5, 60_000, tzinfo=UTC),
]


@pytest.mark.parametrize(
    "stored",
    [
        "2025-01-01 00:00:09.001000",
        "2025-06-30 23:59:59.999999",
        "2025-06-30 23:59:59",  # other spellings take the long way
        "2025-06-30T23:59:59.123456",
        "2025-06-30 23:59:59.5",
        "2025-06-30 23:59:59.123456+00:00",
    ],
)
def test_sqlite_text_as_timestamp_would_write_it(stored: str) -> None:
    assert dialect._sqlite_stamp(stored) == timestamp(dialect._sqlite_time(stored))
    assert dialect._sqlite_stamp(None) is None


async def test_stamp_matches_time_then_timestamp(database: Database) -> None:
    upgrade_to_head(database.url)
    ids = [uuid.uuid4() for _ in TIMES]
    async with database.writing() as session:
        await session.execute(
            insert(Organization),
            [
                {"id": i, "name": f"stamp-{n}", "name_key": f"stamp-{n}", "vcs_type": "github", "created_at": t}
                for n, (i, t) in enumerate(zip(ids, TIMES, strict=True))
            ],
        )
    sql = "SELECT created_at, created_at FROM organizations WHERE id = ?"
    query = RawQuery(sql, params=(UUID,), columns=(TIME, STAMP))
    for org_id, written in zip(ids, TIMES, strict=True):
        async with database.reading() as session:
            [(as_time, as_stamp)] = await fetch_all(session, query, org_id)
        assert as_time == written
        assert as_stamp == timestamp(as_time)
