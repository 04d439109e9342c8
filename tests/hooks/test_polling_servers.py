"""Two `circlet serve` processes on one PostgreSQL database polling the same repository, in real
time: each update fires exactly once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port, server_env
from tests.pipelines.helpers import commit, make_repo
from tests.pipelines.test_trigger import CONFIG


def wait_until(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_two_servers_polling_one_project_fire_each_update_once(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several servers share a PostgreSQL database, not a SQLite file")
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    servers = []
    for name in ("one", "two"):
        home = tmp_path / name
        env = server_env(home, database_url, CIRCLET_SECRET_KEY="shared-test-key")
        server = LiveServer(f"http://127.0.0.1:{free_port()}", home, env, serve_options=("--no-runner",))
        server.start()
        servers.append(server)
    try:
        account = servers[0].admin("bootstrap", "--org", "acme", "--user", "alice")
        servers[0].admin("project", "create", "gh/acme/app", "--repo", str(repo))
        servers[0].admin("project", "poll", "gh/acme/app", "--every", "10s")
        headers = {"Circle-Token": account["token"]}

        def pipelines() -> list[dict[str, Any]]:
            url = servers[1].url + "/api/v2/project/gh/acme/app/pipeline"
            items: list[dict[str, Any]] = httpx.get(url, headers=headers).json()["items"]
            return items

        time.sleep(5)  # the first poll records the refs
        pushed = []
        for n in range(3):
            pushed.append(commit(repo, {"n.txt": str(n)}))
            wait_until(lambda count=n + 1: len(pipelines()) >= count, timeout=30)
        time.sleep(12)  # one more period: a late second firing would show by now
        revisions = [p["vcs"]["revision"] for p in pipelines()]
        assert sorted(revisions) == sorted(pushed), revisions
    finally:
        for server in servers:
            server.stop()
