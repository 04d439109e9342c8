"""How a refused compile is stored on its pipeline: located lines, the first 100, then a count."""

from __future__ import annotations

from pathlib import Path

import httpx

from circlet.db.engine import Database
from tests.conftest import Account
from tests.pipelines.helpers import make_project, make_repo
from tests.pipelines.test_trigger import pipeline_settled


async def test_config_errors_are_located_lines_the_first_hundred_then_a_count(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {"README": "x"})
    slug = await make_project(database, admin, tmp_path / "repo")
    entries = "\n".join(f"      - missing-{n}" for n in range(150))
    config = f"version: 2.1\nworkflows:\n  w:\n    jobs:\n{entries}\n"
    run = await client.post(
        f"/api/v2/project/{slug}/pipeline/run", json={"config": {"content": config}}, headers=admin.headers
    )
    assert run.status_code == 201, run.text
    body = await pipeline_settled(client, admin, run.json()["id"])
    assert body["state"] == "errored"
    [error] = body["errors"]
    lines = error["message"].split("\n")
    assert error["type"] == "config" and len(lines) == 101
    assert lines[0] == ".circleci/config.yml:5:9: workflows.w.jobs[0]: job 'missing-0' is not defined"
    assert lines[99].startswith(".circleci/config.yml:104:9: workflows.w.jobs[99]: ")
    assert lines[100] == "and 50 more"
