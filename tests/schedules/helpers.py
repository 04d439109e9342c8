"""Shared by the schedule tests."""

from __future__ import annotations

from pathlib import Path

from circlet.db.engine import Database
from tests.conftest import Account
from tests.pipelines.helpers import make_project, make_repo


async def project_with_config(database: Database, account: Account, tmp_path: Path, config: str) -> str:
    """A project of a repository made here, whose one commit on `main` holds ``config``; its slug."""
    make_repo(tmp_path / "repo", {".circleci/config.yml": config})
    return await make_project(database, account, tmp_path / "repo")
