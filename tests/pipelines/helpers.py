"""Shared by the pipeline, workflow, job and runner tests: a real git repository made with the git
CLI, a project pointing at it, a runner token, and the runner's side of the protocol over HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from circlet.db.engine import Database
from circlet.projects import service as project_accounts
from circlet.runners import repository as runners
from circlet.runners import service as runner_admin
from circlet.settings import Settings
from circlet.users import service as accounts
from tests.conftest import Account

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
    "HOME": "/tmp",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main", message: str = "first") -> str:
    """A repository with one commit of ``files`` on ``branch``; returns the commit."""
    path.mkdir(parents=True, exist_ok=True)
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", branch)
    return commit(path, files, message=message)


def commit(path: Path, files: dict[str, str], *, message: str = "change") -> str:
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD")


async def make_project(database: Database, account: Account, repo: Path, name: str = "app") -> str:
    async with database.writing() as session:
        org = await accounts.find_org_by_name(session, account.org_slug)
        created = await project_accounts.add_project_for_operator(
            session, org, name, str(repo), "main", Settings().repo_rules()
        )
    return str(created["slug"])


async def runner_token(database: Database, resource_class: str = "local") -> str:
    """A token for the class, made first (owned by the organization its namespace names) if it is
    not ``local``, as an operator would: `circlet admin runner resource-class create`, then `token create`."""
    async with database.writing() as session:
        if resource_class != "local" and await runners.class_by_name(session, resource_class) is None:
            org = await accounts.find_org_by_name(session, resource_class.split("/")[0])
            await runner_admin.create_class(session, None, resource_class, "", org)
        minted = await runner_admin.create_token(session, None, resource_class, "", frozenset({"local"}))
    return str(minted["token"])


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


class ProtocolRunner:
    """The runner's part of docs/runner-protocol.md, spoken over HTTP by the test."""

    def __init__(self, http: httpx.AsyncClient, token: str, resource_class: str = "local"):
        self.http = http
        self.token = token
        self.resource_class = resource_class

    async def claim(self, wait: float = 0) -> dict[str, Any] | None:
        response = await self.http.post(
            "/api/v3/runner/claim",
            json={"resource_class": self.resource_class, "runner_name": "test", "wait_seconds": wait},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else None

    async def call(self, task: dict[str, Any], path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {task['task_token']}", **kwargs.pop("headers", {})}
        return await self.http.post(f"/api/v3/runner/tasks/{task['task_id']}/{path}", headers=headers, **kwargs)

    async def finish(self, task: dict[str, Any], status: str = "success", output: bytes = b"ok\n") -> None:
        for index, step in enumerate(task["steps"]):
            name = step.get("name", step["type"])
            event = {"name": name, "status": "running", "started_at": "2026-01-01T00:00:00Z"}
            assert (await self.call(task, f"steps/{index}", json=event)).status_code == 200
            response = await self.call(
                task, f"steps/{index}/output", content=output, headers={"Content-Type": "application/octet-stream"}
            )
            assert response.status_code == 200, response.text
            done = {**event, "status": "success" if status == "success" else "failed", "exit_code": 0}
            assert (await self.call(task, f"steps/{index}", json=done)).status_code == 200
        response = await self.call(task, "complete", json={"status": status})
        assert response.status_code == 200, response.text

    async def run_all(self, outcomes: dict[str, str] | None = None, *, idle: float = 0.5) -> list[dict[str, Any]]:
        """Claim and finish tasks until none comes for ``idle`` seconds; ``outcomes`` by job name."""
        ran = []
        while True:
            task = await self.claim(wait=idle)
            if task is None:
                return ran
            ran.append(task)
            await self.finish(task, (outcomes or {}).get(task["job"]["name"], "success"))
