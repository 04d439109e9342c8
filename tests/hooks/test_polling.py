"""Polling a repository that sends no webhooks: the server's own loop on real time, and several
pollers at once firing each update exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from circlet.db.engine import Database
from circlet.db.types import utcnow
from circlet.hooks import repository as hook_rows
from circlet.hooks.polling import Poller, parse_every, ref_events
from circlet.hooks.service import set_polling
from tests.conftest import Account
from tests.hooks.helpers import hooked_project, pipelines_of, values_of
from tests.pipelines.helpers import commit, git, make_repo, wait_for
from tests.pipelines.test_trigger import CONFIG


async def due_now(database: Database, project_id: str) -> None:
    async with database.writing() as session:
        await hook_rows.finish_poll(session, uuid.UUID(project_id), None, utcnow())


async def baseline(database: Database, project_id: str) -> None:
    async def recorded() -> bool:
        async with database.reading() as session:
            poll = await hook_rows.get_poll(session, uuid.UUID(project_id))
        return poll is not None and poll.refs is not None

    await wait_for(recorded, timeout=10)


async def test_the_server_polls_and_fires_the_triggers_for_a_new_head(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, _ = await hooked_project(client, database, admin, repo)
    async with database.writing() as session:
        await set_polling(session, uuid.UUID(project_id), 10)
    await baseline(database, project_id)  # the first poll records the refs and fires nothing
    assert await pipelines_of(client, admin, slug) == []

    pushed = commit(repo, {"p.txt": "1"}, message="polled")
    await due_now(database, project_id)
    pipelines = await wait_for(lambda: pipelines_of(client, admin, slug), timeout=10)
    assert [(p["vcs"]["branch"], p["vcs"]["revision"]) for p in pipelines] == [("main", pushed)]
    values = await values_of(client, admin, pipelines[0]["id"])
    assert values["pipeline.trigger.type"] == "git_poll" and values["pipeline.git.base_revision"] == first
    assert pipelines[0]["trigger"]["type"] == "webhook"


async def test_several_pollers_fire_each_update_once(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, _ = await hooked_project(client, database, admin, repo)
    service = client.app.state.hook_service  # type: ignore[attr-defined]
    pollers = [Poller(database, service) for _ in range(3)]
    async with database.writing() as session:
        await set_polling(session, uuid.UUID(project_id), 3600)  # the server's own loop polls it once
    await baseline(database, project_id)

    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"f.txt": "1"})
    git(repo, "tag", "-a", "v1", "-m", "release")
    skipped = commit(repo, {"f.txt": "2"}, message="wip [skip ci]")
    git(repo, "checkout", "-q", "main")
    for _ in range(3):  # each round: the update is due for every poller at once
        await due_now(database, project_id)
        await asyncio.gather(*(poller.poll_once() for poller in pollers))
    pipelines = await pipelines_of(client, admin, slug)
    built = sorted((p["vcs"].get("branch"), p["vcs"].get("tag"), p["vcs"]["revision"]) for p in pipelines)
    assert built == sorted([(None, "v1", feature)])  # the feature head's commit asks to skip CI
    assert skipped not in {p["vcs"]["revision"] for p in pipelines}

    git(repo, "branch", "-D", "feature")  # a deleted branch fires only `only-branch-delete` triggers
    await due_now(database, project_id)
    await asyncio.gather(*(poller.poll_once() for poller in pollers))
    assert len(await pipelines_of(client, admin, slug)) == 1


def test_ref_events_and_periods() -> None:
    known = {"refs/heads/main": "a" * 40, "refs/heads/old": "b" * 40, "refs/tags/v1": "c" * 40}
    seen = {"refs/heads/main": "d" * 40, "refs/tags/v1": "c" * 40, "refs/tags/v2": "e" * 40, "refs/heads/new": "f" * 40}
    events = {(e.branch, e.tag, e.before, e.after, e.deleted) for e in ref_events(known, seen)}
    assert events == {
        ("main", None, "a" * 40, "d" * 40, False),
        ("new", None, None, "f" * 40, False),
        (None, "v2", None, "e" * 40, False),
        ("old", None, "b" * 40, None, True),
    }
    assert [parse_every(text) for text in ("60", "60s", "5m", "1h")] == [60, 60, 300, 3600]
    for bad in ("5s", "m", "", "-1m", "1d"):
        try:
            parse_every(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
