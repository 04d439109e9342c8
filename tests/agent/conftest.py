"""Helpers for the runner agent's tests: tasks built in the test, a git repository to check out, and
an in-memory sink in place of the server."""

from __future__ import annotations

import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from circlet.agent.backends import DockerMode
from circlet.agent.context import TaskStorage
from circlet.agent.executor import TaskResult, TaskRunner
from circlet.agent.isolation import JobUser
from circlet.agent.protocol import Task
from tests.agent.fake_server import FakeRunnerServer
from tests.conftest import reachable_by_jobs


@dataclass
class MemorySink:
    events: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[int, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    chunks: list[tuple[int, bytes]] = field(default_factory=list)

    async def step_event(
        self, index: int, name: str, status: str, exit_code: int | None, started_at: str, ended_at: str | None
    ) -> None:
        self.events.append(
            {"index": index, "name": name, "status": status, "exit_code": exit_code, "ended": ended_at is not None}
        )

    async def step_output(self, index: int, data: bytes) -> None:
        self.outputs[index] += data
        self.chunks.append((index, data))

    def output(self, index: int) -> str:
        return self.outputs[index].decode()

    def final(self) -> dict[int, tuple[str, int | None]]:
        """Each step's last status and exit code."""
        return {event["index"]: (event["status"], event["exit_code"]) for event in self.events if event["ended"]}


def run_step(command: str, **keys: Any) -> dict[str, Any]:
    return {"type": "run", "name": keys.pop("name", command), "command": command, **keys}


def make_task(steps: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "task_id": str(uuid.uuid4()),
        "task_token": "task-token",
        "lease_seconds": 60,
        "heartbeat_seconds": 2,
        "job": {"id": str(uuid.uuid4()), "number": 1, "name": "build", "parallel_index": 0, "parallelism": 1},
        "checkout": None,
        "executor": {"type": "machine", "working_directory": "~/project", "resource_class": "local"},
        "environment": {"CI": "true", "CIRCLECI": "true"},
        "secrets": [],
        "steps": steps,
    }
    task.update(overrides)
    return task


@dataclass
class Run:
    result: TaskResult
    sink: MemorySink


async def execute(
    payload: dict[str, Any],
    work_root: Path,
    *,
    docker: DockerMode = "host",
    kill_grace: float = 5.0,
    storage: TaskStorage | None = None,
    job_user: JobUser | None = None,
    refuse_host_jobs: str | None = None,
    server_url: str | None = None,
) -> Run:
    sink = MemorySink()
    runner = TaskRunner(
        Task.from_json(payload),
        sink,
        work_root=work_root,
        docker=docker,
        kill_grace=kill_grace,
        storage=storage,
        job_user=job_user,
        refuse_host_jobs=refuse_host_jobs,
        server_url=server_url,
    )
    return Run(await runner.run(), sink)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Repo:
    path: Path
    first: str
    second: str


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository with two commits on main: README says "one", then "two"."""
    path = tmp_path / "origin"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "dev@example.com", cwd=path)
    git("config", "user.name", "Dev", cwd=path)
    (path / "README").write_text("one\n")
    git("add", "README", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    first = git("rev-parse", "HEAD", cwd=path)
    (path / "README").write_text("two\n")
    git("commit", "-q", "-am", "two", cwd=path)
    return Repo(path, first, git("rev-parse", "HEAD", cwd=path))


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    """Where task directories go; job users (an agent started as root) can reach it."""
    return reachable_by_jobs(tmp_path / "work")


@pytest.fixture
def runner_server() -> Iterator[FakeRunnerServer]:
    """The server the agent talks to. Today the in-memory protocol server of ``fake_server.py``; to be
    pointed at the real one (``src/circlet/runners/``) once it exists."""
    server = FakeRunnerServer().start()
    try:
        yield server
    finally:
        server.stop()
