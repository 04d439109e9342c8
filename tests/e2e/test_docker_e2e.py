"""docker jobs in real containers end to end: a real `circlet serve` whose embedded runner uses
podman, a real git repository, statuses read through the API. A job's step reaches its secondary
(service) container on localhost, on the checkout the agent made through the bind mount; a job
canceled during a `sleep` in its container ends canceled and leaves no container behind.

SQLite only: what is tested here is the runner's containers, not the database."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from circlet.db.migrate import upgrade_to_head
from tests.agent.test_containers import TEST_IMAGE, connect, echo_server, podman_conf, require_podman
from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.test_pipelines_e2e import setup_project


def indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


CONFIG = f"""
version: 2.1
jobs:
  with-service:
    docker:
      - image: {TEST_IMAGE}
        environment: {{WHERE: primary}}
      - image: {TEST_IMAGE}
        name: pinger
        entrypoint: /bin/sh
        command: ["-c", {json.dumps(echo_server(7201, "pong from $ROLE"))}]
        environment: {{ROLE: service}}
    steps:
      - checkout
      - run:
          name: in the primary container
          command: |
            grep -q "exit 0" /proc/1/cmdline
            test "$WHERE" = primary
            test "$(cat marker.txt)" = "checked out"
      - run:
          name: service on localhost
          command: |
{indent(connect("localhost", 7201).replace("cat <&3", 'answer=$(cat <&3); test "$answer" = "pong from service"'), 12)}
  sleeper:
    docker: [{{image: {TEST_IMAGE}}}]
    steps:
      - run: echo sleeping; sleep 300
workflows:
  main:
    when: {{equal: [main, << pipeline.git.branch >>]}}
    jobs: [with-service]
  slow:
    when: {{equal: [slow, << pipeline.git.branch >>]}}
    jobs: [sleeper]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    engine = require_podman()
    url = f"sqlite+aiosqlite:///{tmp_path / 'circlet.db'}"
    upgrade_to_head(url)
    home = tmp_path / "server-home"
    env = server_env(
        home,
        url,
        CIRCLET_RUNNER_CONTAINER_ENGINE="podman",
        CIRCLET_RUNNER_CONTAINERS_CONF=podman_conf(engine),
        CIRCLET_RUNNER_DOCKER="fail",  # a job that would run on the host instead fails
    )
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, env)
    live.start()
    yield live
    live.stop()


def task_containers(server: LiveServer) -> set[str]:
    listed = subprocess.run(
        ["podman", "ps", "-a", "--filter", "label=circlet.task", "--format", "{{.Names}}"],
        env={**server.env, "CONTAINERS_CONF": server.env["CIRCLET_RUNNER_CONTAINERS_CONF"]},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


def test_service_on_localhost_and_cancel(server: LiveServer, tmp_path: Path) -> None:
    before = task_containers(server)
    api, slug, _ = setup_project(server, tmp_path, CONFIG)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "checkout", "-q", "-b", "slow"], check=True)
    (tmp_path / "repo" / "marker.txt").write_text("checked out\n")
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "checkout", "-q", "main"], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "add", "marker.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "-c", "user.email=e@x", "-c", "user.name=E", "commit", "-qm", "marker"],
        check=True,
    )

    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    settled = api.settled(workflow["id"], "success", "failed", "error")
    assert settled["status"] == "success", (api.jobs(workflow["id"]), (server.home / "server.log").read_text()[-3000:])

    slow = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "slow"})
    [workflow] = api.workflows(slow["id"])
    api.until(lambda: api.jobs(workflow["id"])["sleeper"]["status"] == "running", timeout=30)
    api.until(lambda: task_containers(server) - before, timeout=30)
    api.post(f"/workflow/{workflow['id']}/cancel", 202)
    api.until(lambda: api.jobs(workflow["id"])["sleeper"]["status"] == "canceled", timeout=20)
    api.until(lambda: not task_containers(server) - before, timeout=20)
