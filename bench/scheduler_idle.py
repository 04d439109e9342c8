"""Benchmark of the scheduler's idle cost (issue 13; results in docs/performance.md).

    python bench/scheduler_idle.py [--schedules 10000] [--minutes 10] [--database-url URL]

``--schedules`` schedules (spread over several timetables, none due in the window) are written to a
fresh database (SQLite in a temporary directory unless ``--database-url`` names a PostgreSQL
database, which is used as is), then the real scheduler loop of an app runs for ``--minutes`` minutes
of the schedules' clock, run 60 times faster than real time (``ScheduleClock``: its waits are 60
times shorter, so a minute is a second). Every SQL statement on the schedule tables the app sends
meanwhile is counted (a ``before_cursor_execute`` listener on its engine; the app's other loops, such
as the lease reaper, are not) and timed.

Prints the statements per minute of schedule time, their median and worst duration, and the query
plan of the idle query (SQLite's, or PostgreSQL's). Exit status 1 if the loop
sends more than one statement per minute (plus the first look).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sqlalchemy import event, text  # noqa: E402

from circlet.app import create_app  # noqa: E402
from circlet.db.models import Schedule  # noqa: E402
from circlet.projects.service import add_project_for_operator  # noqa: E402
from circlet.schedules.clock import ScheduleClock  # noqa: E402
from circlet.schedules.service import next_fire_time  # noqa: E402
from circlet.schedules.timetable import parse_timetable  # noqa: E402
from circlet.settings import Settings  # noqa: E402
from circlet.users import service as accounts  # noqa: E402

# Monday 2027-01-04 00:00 UTC: every timetable below runs from noon on, so nothing is due in the window.
START = datetime(2027, 1, 4, tzinfo=UTC)
SPEED = 60.0
TIMETABLES = [
    {"per-hour": per_hour, "hours-of-day": hours, "days-of-week": days}
    for per_hour in (1, 2, 4, 12)
    for hours in ([12], [13, 18], list(range(12, 24)))
    for days in (["MON", "TUE", "WED", "THU", "FRI"], ["SAT", "SUN"], ["MON"])
]


async def seed(settings: Settings, app: Any, count: int) -> None:
    database = app.state.database
    async with database.writing() as session:
        org = await accounts.ensure_org(session, "bench")
        user = await accounts.ensure_user(session, "bench-admin")
        await accounts.add_member(session, org, user, "admin")
        created = await add_project_for_operator(session, org, "app", str(REPO), "main", settings.repo_rules())
    project_id = uuid.UUID(str(created["id"]))
    for start in range(0, count, 1000):
        async with database.writing() as session:
            for n in range(start, min(count, start + 1000)):
                timetable = parse_timetable(TIMETABLES[n % len(TIMETABLES)])
                schedule_id = uuid.uuid4()
                session.add(
                    Schedule(
                        id=schedule_id,
                        project_id=project_id,
                        name=f"schedule-{n}",
                        description=None,
                        timetable=timetable.as_json(),
                        attribution="current",
                        actor_id=user.id,
                        parameters={"branch": "main"},
                        next_fire_at=next_fire_time(schedule_id, timetable, START),
                        created_at=START,
                        updated_at=START,
                    )
                )


async def measure(database_url: str, count: int, minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="circlet-bench-") as home:
        settings = Settings(home=Path(home), database_url=database_url, scheduler=False, scheduler_poll_seconds=60)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await seed(settings, app, count)
            database = app.state.database
            explain = "EXPLAIN QUERY PLAN" if database.is_sqlite else "EXPLAIN"
            async with database.reading() as session:
                if not database.is_sqlite:
                    await session.execute(text("ANALYZE schedules"))
                rows = await session.execute(text(f"{explain} SELECT min(next_fire_at) FROM schedules"))
                plan = "; ".join(str(row[-1]).strip() for row in rows)
            durations: list[float] = []
            started: dict[int, float] = {}

            def before(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
                if "schedule" in statement:  # the app's other loops (the lease reaper) are not counted
                    started[id(cursor)] = time.perf_counter()

            def after(_conn: Any, cursor: Any, *_args: Any) -> None:
                if id(cursor) in started:
                    durations.append((time.perf_counter() - started.pop(id(cursor))) * 1000)

            sync_engine = database.engine.sync_engine
            event.listen(sync_engine, "before_cursor_execute", before)
            event.listen(sync_engine, "after_cursor_execute", after)
            # The clock reads epoch + (real - epoch) * SPEED; the epoch that makes it read START now:
            real = time.time()
            scheduler = app.state.scheduler
            scheduler.clock = ScheduleClock((real * SPEED - START.timestamp()) / (SPEED - 1), SPEED)
            task = asyncio.create_task(scheduler.run())
            await asyncio.sleep(minutes * 60 / SPEED)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            event.remove(sync_engine, "before_cursor_execute", before)
            event.remove(sync_engine, "after_cursor_execute", after)
    return {
        "database": "sqlite" if database_url == "" or database_url.startswith("sqlite") else "postgresql",
        "schedules": count,
        "schedule_minutes": minutes,
        "statements": len(durations),
        "statements_per_minute": round(len(durations) / minutes, 2),
        "statement_ms_median": round(statistics.median(durations), 3) if durations else None,
        "statement_ms_max": round(max(durations), 3) if durations else None,
        "idle_query_plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    result = asyncio.run(measure(args.database_url, args.schedules, args.minutes))
    print(json.dumps(result, indent=2))
    if result["statements"] > args.minutes + 1:
        sys.exit(1)


if __name__ == "__main__":
    main()
