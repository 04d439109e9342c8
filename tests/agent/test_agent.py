"""The agent loop end to end over HTTP: claim, heartbeat, step events and output, cancel, lease loss,
shutdown. ``runner_server`` is the protocol server of ``fake_server.py`` today; the tests only use its
``url``/``token``/``enqueue`` and what it recorded, so they can be pointed at the real server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from circlet.agent.agent import Agent, AgentOptions
from circlet.agent.protocol import Backoff, RunnerClient
from tests.agent.conftest import Repo, make_task, run_step
from tests.agent.fake_server import FakeRunnerServer
from tests.agent.test_executor import process_gone
from tests.conftest import reachable_by_jobs


def agent_for(server: FakeRunnerServer, work_root: Path, **options: object) -> Agent:
    client = RunnerClient(server.url, server.token, runner_name="test", backoff=Backoff(0.05, 0.2))
    return Agent(client, AgentOptions(work_dir=work_root, wait_seconds=1, kill_grace=1.0, **options))  # type: ignore[arg-type]


async def test_a_task_end_to_end(runner_server: FakeRunnerServer, work_root: Path, repo: Repo) -> None:
    secret = "p4ssw0rd!"
    payload = make_task(
        [
            {"type": "checkout"},
            run_step("cat README; sleep 0.5", name="Read"),
            run_step('echo "secret is $PASSWORD"', name="Leak"),
            run_step("exit 0", name="Skipped?", when="on_fail"),
        ],
        heartbeat_seconds=0.1,
        checkout={"url": str(repo.path), "revision": repo.second, "branch": "main"},
        environment={"PASSWORD": secret},
        secrets=[secret],
    )
    runner_server.enqueue(payload)
    agent = agent_for(runner_server, work_root, once=True)
    await asyncio.wait_for(agent.run(), 30)
    task_id = payload["task_id"]
    recorded = runner_server.recorded
    assert recorded.completes[task_id] == {"status": "success", "message": None}
    ends = [(e["index"], e["status"], e["exit_code"]) for e in recorded.events[task_id] if e["ended_at"]]
    assert ends == [(0, "success", 0), (1, "success", 0), (2, "success", 0), (3, "skipped", None)]
    assert [e["name"] for e in recorded.events[task_id]][:2] == ["Checkout code", "Checkout code"]
    assert runner_server.output(task_id, 1) == b"two\n"
    assert runner_server.output(task_id, 2) == b"secret is ********\n"
    assert recorded.heartbeats[task_id] >= 2
    assert list(work_root.iterdir()) == [], "the task's directory is removed"


async def test_cancel_from_the_server(runner_server: FakeRunnerServer, work_root: Path, shared_with_jobs: Path) -> None:
    pid_file = shared_with_jobs / "pid"
    payload = make_task([run_step(f"sleep 300 & echo $! > {pid_file}; wait", name="Long")], heartbeat_seconds=0.1)
    runner_server.enqueue(payload)
    running = asyncio.create_task(agent_for(runner_server, work_root, once=True).run())
    while not (pid_file.exists() and pid_file.read_text().strip()):  # the step runs: now cancel it
        assert not running.done()
        await asyncio.sleep(0.05)
    runner_server.cancel.add(payload["task_id"])
    started = time.monotonic()
    await asyncio.wait_for(running, 30)
    assert time.monotonic() - started < 5
    task_id = payload["task_id"]
    assert runner_server.recorded.completes[task_id] == {"status": "canceled", "message": "canceled"}
    assert runner_server.recorded.events[task_id][-1]["status"] == "canceled"
    assert process_gone(int(pid_file.read_text()))


async def test_a_lost_lease_abandons_the_task(
    runner_server: FakeRunnerServer, work_root: Path, shared_with_jobs: Path
) -> None:
    pid_file = shared_with_jobs / "pid"
    payload = make_task([run_step(f"sleep 300 & echo $! > {pid_file}; wait")], heartbeat_seconds=0.1)
    runner_server.enqueue(payload)
    running = asyncio.create_task(agent_for(runner_server, work_root, once=True).run())
    while not (pid_file.exists() and pid_file.read_text().strip()):
        await asyncio.sleep(0.05)
    runner_server.expired.add(payload["task_id"])
    await asyncio.wait_for(running, 30)
    assert payload["task_id"] not in runner_server.recorded.completes
    for _ in range(40):
        if process_gone(int(pid_file.read_text())):
            break
        await asyncio.sleep(0.05)
    assert process_gone(int(pid_file.read_text()))
    assert list(work_root.iterdir()) == []


async def test_several_tasks_at_once(runner_server: FakeRunnerServer, work_root: Path) -> None:
    payloads = [make_task([run_step("sleep 2")]) for _ in range(2)]
    for payload in payloads:
        runner_server.enqueue(payload)
    agent = agent_for(runner_server, work_root, max_tasks=2)
    started = time.monotonic()
    running = asyncio.create_task(agent.run())
    await asyncio.to_thread(runner_server.wait_for, lambda: len(runner_server.recorded.completes) == 2)
    assert time.monotonic() - started < 3.5, "the two tasks ran side by side"
    agent.shutdown("test")
    await asyncio.wait_for(running, 5)
    assert {payload["task_id"] for payload in payloads} == set(runner_server.recorded.completes)


def start_agent(server: FakeRunnerServer, work_root: Path, token: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "CIRCLET_RUNNER_TOKEN": token}
    return subprocess.Popen(
        [sys.executable, "-m", "circlet.agent", "--url", server.url, "--work-dir", str(reachable_by_jobs(work_root))],
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_runs_tasks_and_shuts_down_cleanly(runner_server: FakeRunnerServer, work_root: Path) -> None:
    secret = "top-secret-value"
    quick = make_task([run_step('echo "$KEY"')], environment={"KEY": secret}, secrets=[secret])
    long = make_task([run_step("echo started; sleep 300")], heartbeat_seconds=0.2)
    runner_server.enqueue(quick)
    runner_server.enqueue(long)
    agent = start_agent(runner_server, work_root, runner_server.token)
    try:
        runner_server.wait_for(lambda: runner_server.output(long["task_id"], 0) == b"started\n", timeout=20)
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=15)
    finally:
        agent.kill()
    assert agent.returncode == 0
    completes = runner_server.recorded.completes
    assert completes[quick["task_id"]] == {"status": "success", "message": None}
    assert runner_server.output(quick["task_id"], 0) == b"********\n"
    assert completes[long["task_id"]] == {
        "status": "infrastructure_fail",
        "message": "the runner was shut down (SIGTERM) while the task ran",
    }
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert {"task claimed", "task completed", "shutting down"} <= {line["event"] for line in lines}
    assert secret not in stderr and runner_server.token not in stderr


def test_the_command_exits_2_on_a_refused_token(runner_server: FakeRunnerServer, work_root: Path) -> None:
    agent = start_agent(runner_server, work_root, "not-the-token")
    _, stderr = agent.communicate(timeout=15)
    assert agent.returncode == 2
    assert json.loads(stderr.splitlines()[-1])["event"] == "runner token refused"
