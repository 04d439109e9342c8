"""A fetch that fails says why, in git's own words and without credentials; a shallow source
repository builds instead of looking branchless."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from circlet.db.engine import Database
from tests.conftest import Account, free_port
from tests.pipelines.helpers import GIT_ENV, commit, make_project, make_repo
from tests.pipelines.test_trigger import CONFIG, pipeline_settled


async def test_a_shallow_source_repository_builds(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    make_repo(source, {".circleci/config.yml": CONFIG})
    tip = commit(source, {"more": "x"})
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{source}", str(shallow)], check=True, env=GIT_ENV)
    slug = await make_project(database, admin, shallow)
    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": "main"}, headers=admin.headers)
    assert response.status_code == 201, response.text
    pipeline = await pipeline_settled(client, admin, response.json()["id"])
    assert pipeline["state"] == "created" and pipeline["vcs"]["revision"] == tip


async def test_fetch_errors_keep_gits_whole_message_without_credentials(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    missing = tmp_path / "not-a-repository"
    slug = await make_project(database, admin, missing)
    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={}, headers=admin.headers)
    assert response.status_code == 400
    message = response.json()["message"]
    # git's cause, and its advice on the lines after it: not just the last line.
    assert "does not appear to be a git repository" in message
    assert "Could not read from remote repository" in message and "correct access rights" in message

    url = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}/repo.git"
    slug = await make_project(database, admin, url, name="private")  # type: ignore[arg-type]
    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={}, headers=admin.headers)
    assert response.status_code == 400
    message = response.json()["message"]
    assert "s3cret-pw" not in message and "alice" not in message
    assert "could not fetch the repository http://127.0.0.1:" in message and "Failed to connect" in message
