"""Benchmark of the web app's list pages (issue 14; figures in docs/performance.md, "Web pages").

    python bench/web_pages.py [--pipelines 10000] [--requests 400]

1. a temporary ``CIRCLET_HOME``; ``circlet admin bootstrap`` makes the user and organization,
   ``circlet admin project create`` a project (a local git repository);
2. ``--pipelines`` pipelines of that project, each with a workflow, written through circlet's models
   (as a long-lived server would have them; triggering 10,000 through the compiler would take long);
3. ``circlet serve --no-access-log`` pinned to core 1; the client (pinned to core 0) signs in with the
   token through the sign-in form, then requests each page one at a time over one keep-alive
   connection: ``--requests`` measured after 50 of warm-up. Latency is the client's (request sent to
   last byte read); the server's CPU time per request is read from /proc;
4. a table, and PASS/FAIL against the targets (p50 < 30 ms, p99 < 100 ms); exit status 1 if any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from _harness import bench_env, bootstrap, circlet_server, cpu_seconds, fail, pinning, print_checks

CONFIG = "version: 2.1\njobs:\n  build: {docker: [{image: cimg/base:stable}], steps: [{run: echo}]}\n"
CONFIG += "workflows:\n  main: {jobs: [build]}\n"
P50_TARGET_MS = 30.0
P99_TARGET_MS = 100.0


def make_repository(path: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b"}
    env |= {"GIT_COMMITTER_EMAIL": "b@example.com", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"}
    (path / ".circleci").mkdir(parents=True)
    (path / ".circleci" / "config.yml").write_text(CONFIG)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)


async def seed(database_url: str, count: int) -> None:
    from sqlalchemy import select

    from circlet.db.engine import create_database
    from circlet.db.models import Pipeline, Project, User, Workflow
    from circlet.db.types import utcnow

    database = create_database(database_url)
    statuses = ("success", "failed", "running", "on_hold", "canceled")
    try:
        async with database.reading() as session:
            project_id = (await session.execute(select(Project.id))).scalar_one()
            actor_id = (await session.execute(select(User.id))).scalar_one()
        start = utcnow() - timedelta(seconds=count)
        for first in range(0, count, 1000):
            async with database.writing() as session:
                for offset in range(first, min(first + 1000, count)):
                    created = start + timedelta(seconds=offset)
                    pipeline_id = uuid.uuid4()
                    session.add(
                        Pipeline(
                            id=pipeline_id,
                            project_id=project_id,
                            number=offset + 1,
                            state="created",
                            trigger_type="api",
                            actor_id=actor_id,
                            branch="main" if offset % 3 else f"feature-{offset % 50}",
                            revision=f"{offset:040x}",
                            commit_subject=f"change number {offset}",
                            created_at=created,
                            updated_at=created,
                        )
                    )
                    status = statuses[offset % len(statuses)]
                    session.add(
                        Workflow(
                            id=uuid.uuid4(),
                            pipeline_id=pipeline_id,
                            project_id=project_id,
                            name="main",
                            status=status,
                            created_at=created,
                            stopped_at=None if status in ("running", "on_hold") else created + timedelta(seconds=61),
                        )
                    )
    finally:
        await database.dispose()


def sign_in(client: httpx.Client, token: str) -> None:
    form = client.get("/signin")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
    if csrf is None:
        fail("the sign-in page has no CSRF token")
    answer = client.post("/signin", data={"method": "token", "token": token, "csrf": csrf.group(1)})
    if answer.status_code != 303:
        fail(f"sign-in answered {answer.status_code}")


def measure(client: httpx.Client, path: str, requests: int, server_pid: int) -> dict[str, float]:
    for _ in range(50):
        answer = client.get(path)
        if answer.status_code != 200:
            fail(f"GET {path} answered {answer.status_code}")
    latencies = []
    cpu_before = cpu_seconds(server_pid)
    for _ in range(requests):
        began = time.perf_counter()
        answer = client.get(path)
        latencies.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            fail(f"GET {path} answered {answer.status_code}")
    cpu = cpu_seconds(server_pid) - cpu_before
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "cpu_ms": cpu * 1000 / requests,
        "bytes": float(len(answer.content)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=400)
    options = parser.parse_args()
    taskset = shutil.which("taskset")
    pin = pinning() and taskset is not None
    work = Path(tempfile.mkdtemp(prefix="circlet-bench-web-"))
    try:
        env = bench_env(work / "home")
        token = bootstrap(env)["token"]
        make_repository(work / "repo")
        command = [sys.executable, "-m", "circlet.cli", "admin", "project", "create", "gh/acme/app"]
        subprocess.run([*command, "--repo", str(work / "repo")], env=env, check=True, capture_output=True)
        asyncio.run(seed(f"sqlite+aiosqlite:///{work / 'home' / 'circlet.db'}", options.pipelines))
        if pin:
            os.sched_setaffinity(0, {0})
        pages = {
            "dashboard": "/",
            "dashboard, branch filter": "/?org=gh/acme&project=app&branch=main",
            "project pipelines": "/pipelines/gh/acme/app",
        }
        results = {}
        with circlet_server(work, env, pin, taskset or "taskset") as server:
            assert server.process is not None
            with httpx.Client(base_url=server.url, timeout=30) as client:
                sign_in(client, token)
                for name, path in pages.items():
                    results[name] = measure(client, path, options.requests, server.process.pid)
        print(f"{options.pipelines} pipelines in the project; {options.requests} requests per page, one at a time")
        print(f"{'page':28} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} {'bytes':>8}")
        for name, r in results.items():
            print(f"{name:28} {r['p50']:8.2f} {r['p99']:8.2f} {r['cpu_ms']:10.2f} {r['bytes']:8.0f}")
        checks = []
        for name, r in results.items():
            checks.append((f"{name} p50 ms", r["p50"], f"< {P50_TARGET_MS:.0f}", r["p50"] < P50_TARGET_MS))
            checks.append((f"{name} p99 ms", r["p99"], f"< {P99_TARGET_MS:.0f}", r["p99"] < P99_TARGET_MS))
        return print_checks(checks)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
