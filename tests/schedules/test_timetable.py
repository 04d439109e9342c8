"""Fire times against UTC times computed by hand: month ends, leap days, days-of-month that short
months lack, the year's end, uneven spacings; and the timetables the API refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from circlet.schedules.timetable import (
    TimetableError,
    latest_fire_at_or_before,
    merge_timetables,
    next_fire_after,
    offset_seconds,
    parse_timetable,
)

EVERY_DAY = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
ALL_HOURS = list(range(24))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


NEXT_FIRE = [
    # (timetable, offset seconds, after, expected next fire time)
    # day 31 skips February: from the last slot of January to March's 31st
    ({"per-hour": 1, "hours-of-day": [0], "days-of-month": [31]}, 0, "2026-01-31T00:00:00", "2026-03-31T00:00:00"),
    # ... and April, June, September, November
    ({"per-hour": 1, "hours-of-day": [0], "days-of-month": [31]}, 0, "2026-03-31T00:00:01", "2026-05-31T00:00:00"),
    ({"per-hour": 1, "hours-of-day": [5], "days-of-month": [31]}, 0, "2026-08-31T06:00:00", "2026-10-31T05:00:00"),
    # 30 and 31 in February and April only: never February, April's 30th
    (
        {"per-hour": 1, "hours-of-day": [23], "days-of-month": [30, 31], "months": ["FEB", "APR"]},
        0,
        "2026-01-01T00:00:00",
        "2026-04-30T23:00:00",
    ),
    # 29 February: the next leap year
    (
        {"per-hour": 1, "hours-of-day": [12], "days-of-month": [29], "months": ["FEB"]},
        0,
        "2026-03-01T00:00:00",
        "2028-02-29T12:00:00",
    ),
    # ... and 2100 is not a leap year: eight years from 2096
    (
        {"per-hour": 1, "hours-of-day": [12], "days-of-month": [29], "months": ["FEB"]},
        0,
        "2096-02-29T12:00:00",
        "2104-02-29T12:00:00",
    ),
    # day 29 every month: February 2027 has none, 2028 has one
    ({"per-hour": 1, "hours-of-day": [0], "days-of-month": [29]}, 0, "2027-02-28T12:00:00", "2027-03-29T00:00:00"),
    ({"per-hour": 1, "hours-of-day": [0], "days-of-month": [29]}, 0, "2028-02-28T01:00:00", "2028-02-29T00:00:00"),
    # the year's end
    (
        {"per-hour": 2, "hours-of-day": ALL_HOURS, "days-of-week": EVERY_DAY},
        0,
        "2026-12-31T23:45:00",
        "2027-01-01T00:00:00",
    ),
    (
        {"per-hour": 1, "hours-of-day": [23], "days-of-month": [31], "months": ["DEC"]},
        300,
        "2026-12-31T23:05:00",
        "2027-12-31T23:05:00",
    ),
    # a weekday: 2026-12-04 is a Friday, the next Saturday is the 5th, the next Monday the 7th
    ({"per-hour": 1, "hours-of-day": [3], "days-of-week": ["SAT"]}, 0, "2026-12-04T18:00:00", "2026-12-05T03:00:00"),
    ({"per-hour": 1, "hours-of-day": [3], "days-of-week": ["MON"]}, 0, "2026-12-05T03:00:00", "2026-12-07T03:00:00"),
    # 7 an hour: 3600/7 = 514.28 s apart, whole seconds: offset 100, then 614 (10:10:14), 1128 (10:18:48)
    (
        {"per-hour": 7, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        100,
        "2026-06-01T10:00:00",
        "2026-06-01T10:01:40",
    ),
    (
        {"per-hour": 7, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        100,
        "2026-06-01T10:01:40",
        "2026-06-01T10:10:14",
    ),
    (
        {"per-hour": 7, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        100,
        "2026-06-01T10:10:14",
        "2026-06-01T10:18:48",
    ),
    # ... the last run of the hour is at 100 + 3085 s (10:53:05), then the next matching hour
    (
        {"per-hour": 7, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        100,
        "2026-06-01T10:53:05",
        "2026-06-02T10:01:40",
    ),
    # 60 an hour: every minute at the offset's second
    (
        {"per-hour": 60, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        59,
        "2026-06-01T10:00:30",
        "2026-06-01T10:00:59",
    ),
    (
        {"per-hour": 60, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        59,
        "2026-06-01T10:00:59",
        "2026-06-01T10:01:59",
    ),
    # months restrict days of the week too: Mondays of March 2027 start on the 1st
    (
        {"per-hour": 1, "hours-of-day": [8], "days-of-week": ["MON"], "months": ["MAR"]},
        0,
        "2026-12-04T00:00:00",
        "2027-03-01T08:00:00",
    ),
]


@pytest.mark.parametrize(("body", "offset", "after", "expected"), NEXT_FIRE)
def test_next_fire_time(body: dict[str, Any], offset: int, after: str, expected: str) -> None:
    assert next_fire_after(parse_timetable(body), offset, at(after)) == at(expected)


LATEST_FIRE = [
    # per-hour 4 at hour 10, offset 120: 10:02, 10:17, 10:32, 10:47
    (
        {"per-hour": 4, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        120,
        "2026-06-01T10:20:00",
        "2026-06-01T10:17:00",
    ),
    (
        {"per-hour": 4, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        120,
        "2026-06-01T10:17:00",
        "2026-06-01T10:17:00",
    ),
    (
        {"per-hour": 4, "hours-of-day": [10], "days-of-week": EVERY_DAY},
        120,
        "2026-06-01T11:05:00",
        "2026-06-01T10:47:00",
    ),
    ({"per-hour": 4, "hours-of-day": [10], "days-of-week": EVERY_DAY}, 120, "2026-06-01T10:01:59", None),
    # across midnight and a month's end: 31 January 23:00
    ({"per-hour": 1, "hours-of-day": [23], "days-of-month": [31]}, 0, "2026-02-01T00:10:00", "2026-01-31T23:00:00"),
    # more than an hour after the last run: none is looked for
    ({"per-hour": 1, "hours-of-day": [23], "days-of-month": [31]}, 0, "2026-02-01T01:00:00", None),
]


@pytest.mark.parametrize(("body", "offset", "moment", "expected"), LATEST_FIRE)
def test_latest_fire_time(body: dict[str, Any], offset: int, moment: str, expected: str | None) -> None:
    assert latest_fire_at_or_before(parse_timetable(body), offset, at(moment)) == (at(expected) if expected else None)


def test_every_run_of_an_hour_is_inside_it_one_spacing_apart() -> None:
    for per_hour in range(1, 61):
        timetable = parse_timetable({"per-hour": per_hour, "hours-of-day": [4], "days-of-week": EVERY_DAY})
        bound = min(600, 3600 / per_hour)
        offset = int(bound) - 1  # the largest offset: the last run must still be inside the hour
        runs = []
        moment = at("2026-06-01T03:59:59")
        for _ in range(per_hour + 1):
            moment = next_fire_after(timetable, offset, moment)
            runs.append(moment)
        assert all(run.hour == 4 and run.date() == runs[0].date() for run in runs[:-1]), per_hour
        assert runs[-1] == at("2026-06-02T04:00:00").replace(second=0) + (runs[0] - at("2026-06-01T04:00:00"))
        gaps = {(b - a).total_seconds() for a, b in zip(runs, runs[1:-1], strict=False)}
        assert all(int(3600 / per_hour) <= gap <= int(3600 / per_hour) + 1 for gap in gaps), (per_hour, gaps)


def test_the_offset_is_fixed_by_the_id_under_ten_minutes_and_one_spacing() -> None:
    ids = [uuid.UUID(int=n * 7919 + 1) for n in range(300)]
    for per_hour in (1, 2, 5, 6, 7, 12, 60):
        offsets = [offset_seconds(schedule_id, per_hour) for schedule_id in ids]
        assert offsets == [offset_seconds(schedule_id, per_hour) for schedule_id in ids]
        assert all(0 <= offset < min(600, 3600 / per_hour) for offset in offsets)
        assert len(set(offsets)) > min(600, 3600 // per_hour) // 3  # spread, not one value
    assert max(offset_seconds(schedule_id, 1) for schedule_id in ids) >= 500


REFUSED = [
    ({"per-hour": 0, "hours-of-day": [1], "days-of-week": ["MON"]}, "per-hour"),
    ({"per-hour": 61, "hours-of-day": [1], "days-of-week": ["MON"]}, "per-hour"),
    ({"per-hour": True, "hours-of-day": [1], "days-of-week": ["MON"]}, "per-hour"),
    ({"per-hour": "2", "hours-of-day": [1], "days-of-week": ["MON"]}, "per-hour"),
    ({"hours-of-day": [1], "days-of-week": ["MON"]}, "per-hour"),
    ({"per-hour": 1, "hours-of-day": [24], "days-of-week": ["MON"]}, "hours-of-day"),
    ({"per-hour": 1, "hours-of-day": [25], "days-of-week": ["MON"]}, "hours-of-day"),
    ({"per-hour": 1, "hours-of-day": [-1], "days-of-week": ["MON"]}, "hours-of-day"),
    ({"per-hour": 1, "hours-of-day": [], "days-of-week": ["MON"]}, "hours-of-day"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-week": ["MONDAY"]}, "days-of-week"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-week": []}, "days-of-week"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-month": [0]}, "days-of-month"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-month": [32]}, "days-of-month"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-week": ["MON"], "days-of-month": [1]}, "mutually exclusive"),
    ({"per-hour": 1, "hours-of-day": [1]}, "exactly one"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-week": ["MON"], "months": ["January"]}, "months"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-month": [30, 31], "months": ["FEB"]}, "never runs"),
    ({"per_hour": 1, "hours-of-day": [1], "days-of-week": ["MON"]}, "'per-hour'"),
    ({"per-hour": 1, "hours-of-day": [1], "days-of-week": ["MON"], "minutes": [5]}, "minutes"),
    ([], "timetable"),
]


@pytest.mark.parametrize(("body", "named"), REFUSED)
def test_refused_timetables_say_why(body: Any, named: str) -> None:
    with pytest.raises(TimetableError, match=named):
        parse_timetable(body)


def test_accepted_timetables_are_stored_in_one_spelling() -> None:
    timetable = parse_timetable(
        {"per-hour": 3, "hours-of-day": [5, 1, 5], "days-of-week": ["SUN", "MON"], "months": ["DEC", "JAN"]}
    )
    assert timetable.as_json() == {
        "per-hour": 3,
        "hours-of-day": [1, 5],
        "days-of-week": ["MON", "SUN"],
        "months": ["JAN", "DEC"],
    }
    # 29 February alone is accepted (leap years), and an empty months list means every month
    assert parse_timetable({"per-hour": 1, "hours-of-day": [0], "days-of-month": [29], "months": ["FEB"]})
    assert parse_timetable({"per-hour": 1, "hours-of-day": [0], "days-of-month": [31], "months": []}).months is None


def test_a_change_of_one_kind_of_days_replaces_the_other() -> None:
    stored = {"per-hour": 1, "hours-of-day": [1], "days-of-week": ["MON"]}
    assert merge_timetables(stored, {"days-of-month": [3]}) == {
        "per-hour": 1,
        "hours-of-day": [1],
        "days-of-month": [3],
    }
    assert merge_timetables(stored, {"per-hour": 4}) == {"per-hour": 4, "hours-of-day": [1], "days-of-week": ["MON"]}
