"""When a schedule fires: its timetable, checked, and its fire times in UTC. Pure: no I/O, no clock.

A timetable names months (none: every month), days (of the week or of the month, never both), hours
of the day and a number of runs per hour. The runs of a matching hour are spread evenly through it
after a fixed offset that depends only on the schedule's id (docs/compatibility.md, "Scheduled
pipelines"):

    fire = hour start + offset + floor(k * 3600 / per-hour) seconds,   k = 0 .. per-hour - 1
    offset = SHA-256(schedule id)[:8] as an integer, modulo floor(min(600, 3600 / per-hour)) seconds

so every fire time is a whole second, inside its hour, at most 10 minutes after the hour for the
first run, and the runs are one spacing apart.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# The longest day of each month in any year (29 February in leap years).
LONGEST_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MAX_OFFSET_SECONDS = 600
HOUR = 3600
# Every matching day recurs within 8 years: 29 February skips 2100, 2200, ... (8 years from 2096).
SEARCH_DAYS = 8 * 366 + 1

KEYS = ("per-hour", "hours-of-day", "days-of-week", "days-of-month", "months")
# The 2021 preview of the API spelled the keys in snake_case; a client still sending them is told.
SNAKE_CASE = {key.replace("-", "_"): key for key in KEYS if "-" in key}


class TimetableError(ValueError):
    """Why a timetable was refused; the message names the key."""


@dataclass(frozen=True)
class Timetable:
    per_hour: int
    hours_of_day: tuple[int, ...]
    days_of_week: tuple[int, ...] | None  # 0 = Monday, as date.weekday()
    days_of_month: tuple[int, ...] | None
    months: tuple[int, ...] | None  # 1 = January; None: every month

    @property
    def spacing_seconds(self) -> float:
        """Time between two runs of one hour: the schedule's period."""
        return HOUR / self.per_hour

    def as_json(self) -> dict[str, Any]:
        """The wire shape (kebab-case keys, names of days and months), as stored and answered."""
        body: dict[str, Any] = {"per-hour": self.per_hour, "hours-of-day": list(self.hours_of_day)}
        if self.days_of_week is not None:
            body["days-of-week"] = [WEEKDAYS[day] for day in self.days_of_week]
        if self.days_of_month is not None:
            body["days-of-month"] = list(self.days_of_month)
        if self.months is not None:
            body["months"] = [MONTHS[month - 1] for month in self.months]
        return body

    def matches_day(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.days_of_week is not None:
            return day.weekday() in self.days_of_week
        return self.days_of_month is not None and day.day in self.days_of_month


def _integers(value: Any, key: str, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise TimetableError(f"timetable.{key}: a non-empty list of integers from {low} to {high}.")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise TimetableError(f"timetable.{key}: each value is an integer from {low} to {high} (got {item!r}).")
    return tuple(sorted(set(value)))


def _names(value: Any, key: str, names: tuple[str, ...], *, empty_means_all: bool = False) -> tuple[int, ...] | None:
    if not isinstance(value, list) or (not value and not empty_means_all):
        raise TimetableError(f"timetable.{key}: a non-empty list of {', '.join(names)}.")
    if not value:
        return None
    for item in value:
        if item not in names:
            raise TimetableError(f"timetable.{key}: each value is one of {', '.join(names)} (got {item!r}).")
    return tuple(sorted({names.index(item) for item in value}))


def parse_timetable(body: Any) -> Timetable:
    """A timetable from its wire shape, or TimetableError naming what is wrong."""
    if not isinstance(body, dict):
        raise TimetableError("timetable: an object with per-hour, hours-of-day and days-of-week or days-of-month.")
    for key in body:
        if key in SNAKE_CASE:
            raise TimetableError(f"timetable.{key}: unknown key; the API spells it {SNAKE_CASE[key]!r}.")
        if key not in KEYS:
            raise TimetableError(f"timetable.{key}: unknown key.")
    for key in ("per-hour", "hours-of-day"):
        if key not in body:
            raise TimetableError(f"timetable.{key}: required.")
    per_hour = body["per-hour"]
    if isinstance(per_hour, bool) or not isinstance(per_hour, int) or not 1 <= per_hour <= 60:
        raise TimetableError("timetable.per-hour: an integer from 1 to 60.")
    hours = _integers(body["hours-of-day"], "hours-of-day", 0, 23)
    if ("days-of-week" in body) == ("days-of-month" in body):
        raise TimetableError("timetable: exactly one of days-of-week and days-of-month (they are mutually exclusive).")
    weekdays = _names(body["days-of-week"], "days-of-week", WEEKDAYS) if "days-of-week" in body else None
    month_days = _integers(body["days-of-month"], "days-of-month", 1, 31) if "days-of-month" in body else None
    month_indexes = _names(body["months"], "months", MONTHS, empty_means_all=True) if "months" in body else None
    months = tuple(index + 1 for index in month_indexes) if month_indexes is not None else None
    if month_days is not None:
        possible = [LONGEST_MONTH_DAYS[m - 1] for m in (months or range(1, 13))]
        if min(month_days) > max(possible):
            raise TimetableError("timetable: no month of the timetable has any of its days-of-month: it never runs.")
    return Timetable(per_hour, hours, weekdays, month_days, months)


def merge_timetables(stored: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's timetable over the stored one: the keys it gives replace theirs; giving one kind of
    days replaces the other kind."""
    merged = {**stored, **change}
    if "days-of-week" in change and "days-of-month" not in change:
        merged.pop("days-of-month", None)
    if "days-of-month" in change and "days-of-week" not in change:
        merged.pop("days-of-week", None)
    return merged


def offset_seconds(schedule_id: uuid.UUID, per_hour: int) -> int:
    """The schedule's fixed delay after the hour: a hash of its id, under 10 minutes and one spacing."""
    bound = int(min(MAX_OFFSET_SECONDS, HOUR / per_hour))
    return int.from_bytes(hashlib.sha256(schedule_id.bytes).digest()[:8], "big") % bound


def _hour_slots(timetable: Timetable, offset: int, hour_start: datetime) -> Iterator[datetime]:
    for k in range(timetable.per_hour):
        yield hour_start + timedelta(seconds=offset + (k * HOUR) // timetable.per_hour)


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def next_fire_after(timetable: Timetable, offset: int, moment: datetime) -> datetime | None:
    """The first fire time strictly after ``moment``; None only for a timetable that never runs."""
    start = _hour_start(moment)
    first_day = start.date()
    for days in range(SEARCH_DAYS):
        day = first_day + timedelta(days=days)
        if not timetable.matches_day(day):
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for hour in timetable.hours_of_day:
            hour_start = midnight + timedelta(hours=hour)
            if hour_start < start:
                continue
            for slot in _hour_slots(timetable, offset, hour_start):
                if slot > moment:
                    return slot
    return None


def latest_fire_at_or_before(timetable: Timetable, offset: int, moment: datetime) -> datetime | None:
    """The last fire time at or before ``moment``, looked for in its hour and the hour before (a run
    is never more than one spacing, at most an hour, from the next)."""
    latest = None
    this_hour = _hour_start(moment)
    for hour_start in (this_hour - timedelta(hours=1), this_hour):
        if not timetable.matches_day(hour_start.date()) or hour_start.hour not in timetable.hours_of_day:
            continue
        for slot in _hour_slots(timetable, offset, hour_start):
            if slot <= moment:
                latest = slot
    return latest
