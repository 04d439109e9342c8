"""Benchmark of forge deliveries (issue 13; results in docs/performance.md).

    python bench/hooks.py [--latency-runs 100] [--rate 100] [--seconds 30]

1. A temporary ``CIRCLET_HOME`` and a small git repository made here; ``circlet admin bootstrap``,
   ``project create`` and ``project hooks`` (the project's webhook secret).
2. ``circlet serve`` on SQLite (one process, no embedded runner: the jobs of the pipelines made
   here wait in the queue; each pipeline is still compiled in the background).
3. Latency, ``--latency-runs`` times, one at a time: a new commit pushed to the repository, then a
   signed GitHub push delivery of it; from sending it to the 201 (the pipeline row is committed
   before the answer), p50 and p99.
4. Load: ``--rate`` deliveries a second for ``--seconds`` seconds, sent on schedule whatever the
   answers (open loop, at most 100 in flight), each a distinct delivery of one of a commit per
   second; each must be answered 201 within 1 s of when it was due, and the database must hold one
   pipeline per delivery at the end. Also printed: the server's CPU time (its process and compile
   workers) per delivery, background compile included: the figure that does not depend on what
   else the machine runs.

Traffic goes to 127.0.0.1 only. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _harness import cpu_seconds, free_port
from sqlalchemy.ext.asyncio import create_async_engine

CONFIG = """
version: 2.1
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    steps: [{run: "true"}]
workflows:
  main:
    jobs: [build]
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
ZERO = "0" * 40
IN_FLIGHT = 100


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "circlet.cli", *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    return done.stdout.strip()


def new_commit(repo: Path, n: int) -> str:
    (repo / "n.txt").write_text(str(n))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"change {n}")
    return git(repo, "rev-parse", "HEAD")


def delivery(secret: str, before: str, after: str) -> dict[str, Any]:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": after,
            "head_commit": {"id": after, "message": "change"},
            "sender": {"login": "bench"},
        }
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }
    return {"content": body, "headers": headers}


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the server's compile workers)."""
    children = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout.split()
    return sum(cpu_seconds(process) for process in [pid, *map(int, children)])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="circlet-bench-hooks-"))
    home = work / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    env.update({"CIRCLET_HOME": str(home)})
    cli(env, "admin", "bootstrap", "--org", "bench", "--user", "bench")
    repo = work / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".circleci").mkdir()
    (repo / ".circleci" / "config.yml").write_text(CONFIG)
    head = new_commit(repo, 0)
    cli(env, "admin", "project", "create", "gh/bench/app", "--repo", str(repo))
    hooks = cli(env, "admin", "project", "hooks", "gh/bench/app")
    secret = hooks["github"]["secret"]
    path = "/hooks/github/" + hooks["github"]["url"].rsplit("/", 1)[1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "circlet.cli", "serve", "--port", str(port), "--no-runner", "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = create_async_engine(f"sqlite+aiosqlite:///{home / 'circlet.db'}")
    failures = []
    try:
        limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) as http:
            for _ in range(600):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

            latencies = []
            for n in range(1, args.latency_runs + 1):
                before, head = head, new_commit(repo, n)
                sent = time.perf_counter()
                response = await http.post(path, **delivery(secret, before, head))
                latencies.append((time.perf_counter() - sent) * 1000)
                if response.status_code != 201:
                    raise SystemExit(f"delivery answered {response.status_code}: {response.text}")
                await asyncio.sleep(0.05)
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            print(f"latency delivery -> pipeline created: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} runs)")
            if p50 >= 100 or p99 >= 300:
                failures.append("latency")

            commits = []
            for second in range(args.seconds):
                before, head = head, new_commit(repo, 10_000 + second)
                commits.append((before, head))
            answers: list[tuple[int, float]] = []
            start = time.perf_counter()

            # At most IN_FLIGHT requests at once (httpx's pool slows down with thousands queued in it):
            # a request waiting for a slot is late, and its time counts from when it was due.
            in_flight = asyncio.Semaphore(IN_FLIGHT)

            async def send(index: int) -> None:
                before, after = commits[index // args.rate]
                due = start + index / args.rate
                async with in_flight:
                    try:
                        response = await http.post(path, **delivery(secret, before, after))
                        answers.append((response.status_code, time.perf_counter() - due))
                    except httpx.HTTPError:
                        answers.append((0, time.perf_counter() - due))

            total = args.rate * args.seconds
            cpu_before, main_before = tree_cpu_seconds(server.pid), cpu_seconds(server.pid)
            tasks = []
            for index in range(total):
                delay = start + index / args.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(index)))
            await asyncio.gather(*tasks)
            for _ in range(600):  # until the background compiles are done too
                async with engine.connect() as connection:
                    query = sa.text("SELECT count(*) FROM pipelines WHERE state = 'pending'")
                    if int((await connection.execute(query)).scalar_one()) == 0:
                        break
                await asyncio.sleep(0.5)
            cpu, main_cpu = tree_cpu_seconds(server.pid) - cpu_before, cpu_seconds(server.pid) - main_before
            accepted = sum(1 for status, seconds in answers if status == 201 and seconds < 1.0)
            created = sum(1 for status, _ in answers if status == 201)
            slowest = max(seconds for _, seconds in answers)
            load = [seconds * 1000 for status, seconds in answers if status == 201]
            async with engine.connect() as connection:
                stored = int((await connection.execute(sa.text("SELECT count(*) FROM pipelines"))).scalar_one())
            stored -= args.latency_runs
            print(
                f"load {args.rate}/s for {args.seconds} s: {accepted}/{total} answered 201 within 1 s "
                f"({created} created; p50 {percentile(load, 0.5):.1f} ms, p99 {percentile(load, 0.99):.1f} ms, "
                f"slowest {slowest * 1000:.0f} ms); {stored} pipelines stored"
            )
            if accepted != total or stored != total:
                failures.append("load")
            print("median answer under load:", f"{statistics.median(load):.1f} ms" if load else "-")
            per = 1000 / max(created, 1)
            print(
                f"server CPU per delivery (request and background compile): {cpu * per:.1f} ms, of which the "
                f"server process {main_cpu * per:.1f} ms and its compile workers {(cpu - main_cpu) * per:.1f} ms"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
        await engine.dispose()
    if failures:
        print("missed:", ", ".join(failures))
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-runs", type=int, default=100)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=30)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
