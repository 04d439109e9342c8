"""Scheduled pipelines on real `circlet serve` processes: a `per-hour: 60` schedule fires within the
next minute of real time; two processes on one PostgreSQL database, racing for every fire time of a
shared schedule (on the faster test clock), make exactly one pipeline per fire time."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port, server_env
from tests.pipelines.helpers import make_repo

CONFIG = (
    "version: 2.1\njobs: {build: {docker: [{image: x}], steps: [{run: 'true'}]}}\nworkflows: {main: {jobs: [build]}}\n"
)
EVERY_MINUTE = {
    "per-hour": 60,
    "hours-of-day": list(range(24)),
    "days-of-week": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"],
}


def seeded(server: LiveServer, repo: Path) -> httpx.Client:
    """An admin's client of ``gh/sched/app``, a project of a repository made here."""
    account = server.admin("bootstrap", "--org", "sched", "--user", "alice")
    make_repo(repo, {".circleci/config.yml": CONFIG})
    server.admin("project", "create", "gh/sched/app", "--repo", str(repo))
    return httpx.Client(base_url=server.url + "/api/v2", headers={"Circle-Token": account["token"]}, timeout=30)


def create_schedule(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "every-minute",
        "timetable": EVERY_MINUTE,
        "attribution-actor": "system",
        "parameters": {"branch": "main"},
        **extra,
    }
    response = api.post("/project/gh/sched/app/schedule", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_sixty_an_hour_fires_within_the_next_minute_of_real_time(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("real time once is enough; PostgreSQL has the two-process test")
    api = seeded(live_server, tmp_path / "repo")
    created_at = time.time()
    create_schedule(api)
    deadline = created_at + 75
    while not (items := api.get("/project/gh/sched/app/pipeline").json()["items"]):
        assert time.time() < deadline, "no pipeline within 75 s"
        time.sleep(0.25)
    seen = time.time()
    [pipeline] = items
    started = datetime.fromisoformat(pipeline["created_at"].replace("Z", "+00:00")).timestamp()
    assert started - created_at <= 61, started - created_at  # the first run is at most one spacing away
    assert seen - created_at <= 62
    assert pipeline["trigger"]["type"] == "scheduled_pipeline"
    assert pipeline["trigger"]["actor"]["login"] == "system-actor"


def test_two_servers_on_postgresql_fire_each_time_once(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("several server processes share a PostgreSQL database")
    # Ten times real time: a run a minute is one every 6 s; both processes agree on the clock.
    extra = {"CIRCLET_TEST_SCHEDULER_CLOCK": f"{time.time():.3f}:10", "CIRCLET_SECRET_KEY": "shared-by-both"}
    servers = []
    for name in ("one", "two"):
        home = tmp_path / name
        server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url, **extra))
        server.serve_options = ("--no-runner",)
        server.start()
        servers.append(server)
    try:
        api = seeded(servers[0], tmp_path / "repo")
        schedule = create_schedule(api)
        deadline = time.monotonic() + 120
        while len(items := api.get("/project/gh/sched/app/pipeline").json()["items"]) < 5:
            assert time.monotonic() < deadline, f"{len(items)} pipelines in 120 s"
            time.sleep(0.5)
        api.delete(f"/schedule/{schedule['id']}")
        time.sleep(1)
        pipelines = api.get("/project/gh/sched/app/pipeline").json()["items"]
    finally:
        for server in servers:
            server.stop()
    fired = []
    for server in servers:
        assert server.log_path is not None
        for line in server.log_path.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "schedule fired":
                fired.append(json.loads(line))
    # Every pipeline was made by one fire of one process, and no fire time twice.
    fire_times = [entry["fire_at"] for entry in fired]
    assert len(fire_times) == len(set(fire_times)) == len(pipelines) >= 5
    assert {entry["pipeline_id"] for entry in fired} == {p["id"] for p in pipelines}
    # The fire times are the schedule's, whole minutes (of the test clock) apart. (A look later than one
    # spacing, 6 s here, on a loaded machine skips a fire time rather than firing it late: no gap is
    # asserted.)
    stamps = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in fire_times)
    assert all((b - a).total_seconds() % 60 == 0 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    assert all(p["trigger"]["type"] == "scheduled_pipeline" for p in pipelines)
