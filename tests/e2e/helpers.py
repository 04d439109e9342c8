"""Shared by the end-to-end tests: the API v2 as a client calls it, and a `circlet runner` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import reachable_by_jobs


class Api:
    def __init__(self, url: str, token: str):
        self.http = httpx.Client(base_url=url + "/api/v2", headers={"Circle-Token": token}, timeout=30)

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, status: int, **kwargs: Any) -> Any:
        response = self.http.post(path, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def until(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    def workflows(self, pipeline_id: str, count: int = 1) -> list[dict[str, Any]]:
        return self.until(  # type: ignore[no-any-return]
            lambda: (items := self.get(f"/pipeline/{pipeline_id}/workflow")["items"]) and len(items) >= count and items
        )

    def jobs(self, workflow_id: str) -> dict[str, dict[str, Any]]:
        return {j["name"]: j for j in self.get(f"/workflow/{workflow_id}/job")["items"]}

    def run_inline(self, slug: str, config: str, branch: str = "main") -> dict[str, dict[str, Any]]:
        """Runs ``config`` inline; its (one) workflow's jobs by name once the workflow has ended."""
        body = {"config": {"content": config}, "checkout": {"branch": branch}}
        pipeline = self.post(f"/project/{slug}/pipeline/run", 201, json=body)
        [workflow] = self.workflows(pipeline["id"])
        self.settled(workflow["id"], "success", "failed", "canceled", "error", "not_run")
        return self.jobs(workflow["id"])

    def settled(self, workflow_id: str, *statuses: str) -> dict[str, Any]:
        return self.until(  # type: ignore[no-any-return]
            lambda: (body := self.get(f"/workflow/{workflow_id}"))["status"] in statuses and body
        )


def start_runner(url: str, token: str, resource_class: str, work_dir: Path, *options: str) -> subprocess.Popen[bytes]:
    """A real `circlet runner` process (its log in ``work_dir``/../runner.log), the token in its
    environment as operators are told to pass it."""
    reachable_by_jobs(work_dir)
    env = {**os.environ, "CIRCLET_RUNNER_TOKEN": token}
    log = (work_dir.parent / f"runner-{resource_class.replace('/', '-')}.log").open("ab")
    command = [sys.executable, "-m", "circlet.cli", "runner", "--url", url, "--resource-class", resource_class]
    return subprocess.Popen(
        [*command, "--work-dir", str(work_dir), *options], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for_port(host: str, port: int) -> None:
    """Until something accepts connections on host:port (a server the test started), or 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")
