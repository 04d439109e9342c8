"""The scheduler on the real app and database, with the schedules' clock moved by the test: fire
times, pipeline values, the actor, parameters, no burst after downtime, errored pipelines that say
why, and one pipeline per fire time with two schedulers racing."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from circlet.db.engine import Database
from circlet.db.models import ScheduleFire
from circlet.groups.service import add_group_member
from circlet.schedules import repository as schedules
from circlet.schedules.scheduler import Scheduler
from circlet.schedules.timetable import offset_seconds
from circlet.users import service as accounts
from tests.conftest import Account, make_account
from tests.pipelines.helpers import git, wait_for
from tests.pipelines.test_trigger import pipeline_settled
from tests.schedules.conftest import START
from tests.schedules.helpers import project_with_config

EVERY_DAY = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
CONFIG = """
version: 2.1
parameters:
  deploy: {type: boolean, default: false}
jobs:
  build:
    docker: [{image: x}]
    steps: [{run: echo "<< pipeline.schedule.name >> << pipeline.schedule.id >> << pipeline.trigger_source >>"}]
workflows:
  scheduled:
    when: {equal: [scheduled_pipeline, << pipeline.trigger_source >>]}
    jobs: [build]
  deploy:
    when: << pipeline.parameters.deploy >>
    jobs: [build]
  by-api:
    when: {not: {equal: [scheduled_pipeline, << pipeline.trigger_source >>]}}
    jobs: [build]
"""


def app_of(client: httpx.AsyncClient) -> FastAPI:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    return app


def set_time(client: httpx.AsyncClient, moment: datetime) -> None:
    """The schedules' clock stands still (speed 0) at its epoch: moving the epoch moves the time."""
    app_of(client).state.schedule_clock.epoch = moment.timestamp()


async def run_until(
    client: httpx.AsyncClient, end: datetime, step: timedelta = timedelta(minutes=1)
) -> dict[tuple[uuid.UUID, datetime], uuid.UUID | None]:
    """Move the clock to ``end`` a step at a time, letting the scheduler look at each step; every
    fire time claimed meanwhile (the scheduler deletes claims older than two hours)."""
    state = app_of(client).state
    moment = state.schedule_clock.now()
    claimed = {}
    while moment < end:
        moment = min(moment + step, end)
        set_time(client, moment)
        await state.scheduler.tick()
        async with state.database.reading() as session:
            for fire in (await session.execute(select(ScheduleFire))).scalars():
                claimed[(fire.schedule_id, fire.fire_at)] = fire.pipeline_id
    return claimed


async def create(
    client: httpx.AsyncClient, account: Account, slug: str, timetable: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    body = {
        "name": "nightly",
        "timetable": timetable,
        "attribution-actor": "current",
        "parameters": {"branch": "main"},
        **extra,
    }
    response = await client.post(f"/api/v2/project/{slug}/schedule", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def pipelines_of(client: httpx.AsyncClient, account: Account, slug: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await client.get(f"/api/v2/project/{slug}/pipeline", headers=account.headers)
    ).json()["items"]
    return sorted(items, key=lambda item: item["number"])


async def by_schedule(
    client: httpx.AsyncClient, account: Account, slug: str, known: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The project's pipelines (but ``known``), settled, by the name of the schedule that made them."""
    found = {}
    for pipeline in await pipelines_of(client, account, slug):
        if pipeline["id"] not in (known or set()):
            values = (await client.get(f"/api/v2/pipeline/{pipeline['id']}/values", headers=account.headers)).json()
            found[values["pipeline.schedule.name"]] = await pipeline_settled(client, account, pipeline["id"])
    return found


async def fire_times(database: Database, schedule_id: str) -> list[tuple[datetime, uuid.UUID | None]]:
    async with database.reading() as session:
        return [(fire.fire_at, fire.pipeline_id) for fire in await schedules.fires_of(session, uuid.UUID(schedule_id))]


async def test_twice_an_hour_for_three_hours_is_six_pipelines_half_an_hour_apart(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    created = await create(
        client, admin, slug, {"per-hour": 2, "hours-of-day": list(range(24)), "days-of-week": EVERY_DAY}
    )
    offset = timedelta(seconds=offset_seconds(uuid.UUID(created["id"]), 2))
    claimed = await run_until(client, START + timedelta(hours=3) - timedelta(seconds=1))

    fires = sorted((fire_at, pipeline_id) for (_, fire_at), pipeline_id in claimed.items())
    assert [fire_at for fire_at, _ in fires] == [START + offset + timedelta(minutes=30 * k) for k in range(6)]
    pipelines = await pipelines_of(client, admin, slug)
    assert len(pipelines) == 6 and {p["id"] for p in pipelines} == {str(pipeline_id) for _, pipeline_id in fires}
    # Claims older than two hours are deleted: no process may still claim them.
    assert [fire_at for fire_at, _ in await fire_times(database, created["id"])][0] >= START + timedelta(minutes=30)
    for pipeline in pipelines:
        assert pipeline["trigger"]["type"] == "scheduled_pipeline"
        assert pipeline["trigger"]["actor"]["login"] == admin.login
        assert pipeline["vcs"]["branch"] == "main"

    first = await pipeline_settled(client, admin, pipelines[0]["id"])
    assert first["state"] == "created", first
    values = (await client.get(f"/api/v2/pipeline/{first['id']}/values", headers=admin.headers)).json()
    assert values["pipeline.trigger_source"] == "scheduled_pipeline"
    assert values["pipeline.trigger.type"] == "schedule"
    assert values["pipeline.event.name"] == values["pipeline.event.action"] == "schedule"
    assert values["pipeline.schedule.name"] == "nightly" and values["pipeline.schedule.id"] == created["id"]
    workflows = (await client.get(f"/api/v2/pipeline/{first['id']}/workflow", headers=admin.headers)).json()["items"]
    assert [w["name"] for w in workflows] == ["scheduled"]
    config = (await client.get(f"/api/v2/pipeline/{first['id']}/config", headers=admin.headers)).json()
    assert f"nightly {created['id']} scheduled_pipeline" in config["compiled"]

    # The same project triggered through the API: the schedule's values are empty, its workflow filtered out.
    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": "main"}, headers=admin.headers)
    by_api = await pipeline_settled(client, admin, response.json()["id"])
    workflows = (await client.get(f"/api/v2/pipeline/{by_api['id']}/workflow", headers=admin.headers)).json()["items"]
    assert [w["name"] for w in workflows] == ["by-api"]


async def test_parameters_and_a_tag(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    sha = git(tmp_path / "repo", "rev-parse", "HEAD")
    git(tmp_path / "repo", "tag", "v1.0")
    timetable = {"per-hour": 1, "hours-of-day": [9], "days-of-week": ["FRI"]}
    await create(client, admin, slug, timetable, name="deploy", parameters={"branch": "main", "deploy": True})
    await create(client, admin, slug, timetable, name="release", parameters={"tag": "v1.0"})
    await run_until(client, START + timedelta(minutes=11))
    by_name = await by_schedule(client, admin, slug)
    deploy, release = by_name["deploy"], by_name["release"]
    assert release["vcs"]["tag"] == "v1.0" and "branch" not in release["vcs"] and release["vcs"]["revision"] == sha
    workflows = (await client.get(f"/api/v2/pipeline/{deploy['id']}/workflow", headers=admin.headers)).json()["items"]
    assert sorted(w["name"] for w in workflows) == ["deploy", "scheduled"]
    config = (await client.get(f"/api/v2/pipeline/{deploy['id']}/config", headers=admin.headers)).json()
    assert "deploy" in config["compiled"]


async def test_a_server_down_across_fire_times_fires_at_most_the_latest(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    every_quarter = await create(
        client, admin, slug, {"per-hour": 4, "hours-of-day": list(range(24)), "days-of-week": EVERY_DAY}
    )
    daily = await create(
        client, admin, slug, {"per-hour": 1, "hours-of-day": [10], "days-of-week": EVERY_DAY}, name="daily"
    )
    quarter_offset = timedelta(seconds=offset_seconds(uuid.UUID(every_quarter["id"]), 4))
    daily_offset = timedelta(seconds=offset_seconds(uuid.UUID(daily["id"]), 1))
    scheduler: Scheduler = app_of(client).state.scheduler

    # Down from 09:00 to 12:05: twelve runs of the first and one of the second were missed.
    set_time(client, START + timedelta(hours=3, minutes=5))
    await scheduler.tick()
    latest = max(
        START + timedelta(hours=3) + quarter_offset + timedelta(minutes=15 * k)
        for k in range(-1, 4)
        if START + timedelta(hours=3) + quarter_offset + timedelta(minutes=15 * k)
        <= START + timedelta(hours=3, minutes=5)
    )
    assert [fire_at for fire_at, _ in await fire_times(database, every_quarter["id"])] == [latest]
    # The daily run (10:00 + offset) is more than its period (an hour) late: skipped, not fired.
    assert await fire_times(database, daily["id"]) == []
    assert len(await pipelines_of(client, admin, slug)) == 1
    await scheduler.tick()  # nothing more to catch up
    assert len(await pipelines_of(client, admin, slug)) == 1

    # The daily one runs again on time the next day.
    set_time(client, START + timedelta(days=1, hours=1) + daily_offset + timedelta(seconds=20))
    await scheduler.tick()
    assert [f for f, _ in await fire_times(database, daily["id"])] == [
        START + timedelta(days=1, hours=1) + daily_offset
    ]

    # Less than one period late: still fired.
    set_time(client, START + timedelta(days=2, hours=1) + daily_offset + timedelta(minutes=59))
    await scheduler.tick()
    assert [f for f, _ in await fire_times(database, daily["id"])] == [
        START + timedelta(days=2, hours=1) + daily_offset
    ]


async def test_a_gone_branch_repository_or_config_errors_a_pipeline_that_says_so(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    hourly = {"per-hour": 1, "hours-of-day": list(range(24)), "days-of-week": EVERY_DAY}
    await create(client, admin, slug, hourly, name="on-main")
    await create(client, admin, slug, hourly, name="on-gone", parameters={"branch": "gone"})

    async def hour_of_pipelines(hour: int) -> dict[str, dict[str, Any]]:
        """Run the clock to ``hour`` o'clock + 11 minutes (both have fired): their pipelines, settled, by schedule."""
        known = {p["id"] for p in await pipelines_of(client, admin, slug)}
        await run_until(client, START + timedelta(hours=hour, minutes=11))
        by_name = await by_schedule(client, admin, slug, known)
        assert sorted(by_name) == ["on-gone", "on-main"]
        return by_name

    first = await hour_of_pipelines(0)
    assert first["on-main"]["state"] == "created"
    gone = first["on-gone"]
    assert gone["state"] == "errored" and gone["trigger"]["type"] == "scheduled_pipeline"
    [error] = gone["errors"]
    assert error["type"] == "config-fetch" and "'on-gone'" in error["message"] and "'gone'" in error["message"]

    git(tmp_path / "repo", "rm", "-q", ".circleci/config.yml")
    git(tmp_path / "repo", "commit", "-q", "-m", "config removed")
    second = await hour_of_pipelines(1)
    [error] = second["on-main"]["errors"]
    assert second["on-main"]["state"] == "errored" and error["type"] == "config-fetch"
    assert ".circleci/config.yml" in error["message"]

    shutil.rmtree(tmp_path / "repo")
    third = await hour_of_pipelines(2)
    for pipeline in third.values():
        [error] = pipeline["errors"]
        assert pipeline["state"] == "errored" and error["type"] == "config-fetch" and error["message"]
    assert "'on-main'" in third["on-main"]["errors"][0]["message"]


async def test_the_actor_decides_restricted_contexts(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    config = """
version: 2.1
jobs:
  secret:
    docker: [{image: x}]
    steps: [{run: echo}]
workflows:
  main:
    jobs: [{secret: {context: [team-only]}}]
"""
    slug = await project_with_config(database, admin, tmp_path, config)
    group = await client.post(
        f"/api/v2/organizations/{admin.org_id}/groups", json={"name": "team"}, headers=admin.headers
    )
    async with database.writing() as session:
        org = await accounts.find_org_by_name(session, admin.org_slug)
        user = await accounts.ensure_user(session, admin.login)
        await add_group_member(session, org, "team", user)
    context = await client.post(
        "/api/v2/context", json={"name": "team-only", "owner": {"id": admin.org_id}}, headers=admin.headers
    )
    restriction = await client.post(
        f"/api/v2/context/{context.json()['id']}/restrictions",
        json={"restriction_type": "group", "restriction_value": group.json()["id"]},
        headers=admin.headers,
    )
    assert restriction.status_code == 201, restriction.text
    timetable = {"per-hour": 1, "hours-of-day": [9], "days-of-week": ["FRI"]}
    await create(client, admin, slug, timetable, name="as-admin")
    await create(client, admin, slug, timetable, name="as-system", **{"attribution-actor": "system"})
    await run_until(client, START + timedelta(minutes=11))

    statuses = {}
    for pipeline in await pipelines_of(client, admin, slug):
        await pipeline_settled(client, admin, pipeline["id"])
        values = (await client.get(f"/api/v2/pipeline/{pipeline['id']}/values", headers=admin.headers)).json()

        async def job_status(pipeline_id: str = pipeline["id"]) -> str | None:
            workflows = (await client.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=admin.headers)).json()
            if not workflows["items"]:
                return None
            jobs = (
                await client.get(f"/api/v2/workflow/{workflows['items'][0]['id']}/job", headers=admin.headers)
            ).json()
            return str(jobs["items"][0]["status"]) if jobs["items"] else None

        statuses[values["pipeline.schedule.name"]] = (pipeline["trigger"]["actor"]["login"], await wait_for(job_status))
    assert statuses["as-admin"][0] == admin.login and statuses["as-admin"][1] != "unauthorized"
    assert statuses["as-system"] == ("system-actor", "unauthorized")


async def test_two_schedulers_on_one_database_make_one_pipeline_per_fire_time(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    created = await create(client, admin, slug, {"per-hour": 12, "hours-of-day": [9], "days-of-week": ["FRI"]})
    state = app_of(client).state
    other = Scheduler(database, state.pipeline_service, state.schedule_clock)
    moment = START
    for _ in range(70):
        moment += timedelta(minutes=1)
        set_time(client, moment)
        await asyncio.gather(state.scheduler.tick(), other.tick(), other.tick())
    fires = await fire_times(database, created["id"])
    assert len(fires) == 12 and all(pipeline_id is not None for _, pipeline_id in fires)
    assert len(await pipelines_of(client, admin, slug)) == 12


async def test_changes_take_effect_and_deletion_stops_it(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    created = await create(client, admin, slug, {"per-hour": 1, "hours-of-day": [23], "days-of-week": EVERY_DAY})
    await run_until(client, START + timedelta(minutes=30))
    assert await pipelines_of(client, admin, slug) == []
    # Moved to 9 o'clock and 6 an hour: the runs of 9:30 to 9:59 happen.
    await client.patch(
        f"/api/v2/schedule/{created['id']}",
        json={"timetable": {"per-hour": 6, "hours-of-day": [9]}},
        headers=admin.headers,
    )
    claimed = await run_until(client, START + timedelta(minutes=59, seconds=59))
    offset = timedelta(seconds=offset_seconds(uuid.UUID(created["id"]), 6))
    expected = [START + offset + timedelta(minutes=10 * k) for k in range(6)]
    assert sorted(fire_at for _, fire_at in claimed) == [t for t in expected if t > START + timedelta(minutes=30)]
    count = len(await pipelines_of(client, admin, slug))
    await client.delete(f"/api/v2/schedule/{created['id']}", headers=admin.headers)
    await run_until(client, START + timedelta(days=1, hours=1))
    assert len(await pipelines_of(client, admin, slug)) == count


async def test_an_actor_who_may_no_longer_trigger_gets_an_errored_pipeline(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug = await project_with_config(database, admin, tmp_path, CONFIG)
    creator = await make_account(database, org=admin.org_slug.split("/")[-1], role="admin")
    timetable = {"per-hour": 1, "hours-of-day": [9, 10], "days-of-week": ["FRI"]}
    await create(client, creator, slug, timetable, name="by-creator")
    async with database.writing() as session:
        org = await accounts.find_org_by_name(session, admin.org_slug)
        await accounts.add_member(session, org, await accounts.ensure_user(session, creator.login), "viewer")
    await run_until(client, START + timedelta(minutes=11))
    [pipeline] = await pipelines_of(client, admin, slug)
    assert pipeline["state"] == "errored" and pipeline["trigger"]["actor"]["login"] == creator.login
    [error] = pipeline["errors"]
    assert error["type"] == "permission" and creator.login in error["message"] and "by-creator" in error["message"]
    # A member again: the next fire time runs.
    async with database.writing() as session:
        org = await accounts.find_org_by_name(session, admin.org_slug)
        await accounts.add_member(session, org, await accounts.ensure_user(session, creator.login), "member")
    await run_until(client, START + timedelta(hours=1, minutes=11))
    later = (await pipelines_of(client, admin, slug))[-1]
    assert (await pipeline_settled(client, admin, later["id"]))["state"] == "created"
