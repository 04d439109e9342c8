"""Benchmark of the pipeline engine (issue 5; results in docs/performance.md).

    python bench/pipelines.py [--backend sqlite|postgresql] [--pipelines 200]

1. A temporary ``CIRCLET_HOME`` and a git repository made here; ``circlet admin bootstrap`` and
   ``circlet admin project create`` point a project at it.
2. ``circlet serve`` with its embedded runner (SQLite: one API process; PostgreSQL, from
   ``$CIRCLET_BENCH_POSTGRES`` or 127.0.0.1:5432: ``--workers 2``, on a fresh database).
3. Latency, 20 times, one at a time: from sending ``POST /project/{slug}/pipeline`` to the first
   ``run`` step's command starting (it writes ``time.time()`` to a file).
4. Throughput: ``--pipelines`` single-job pipelines (``run: true``) triggered at once (32 in flight);
   the time until every job has succeeded, read from the database.
5. Engine overhead per job: for the throughput jobs, queued → claimed (the queue) and the job's
   wall time minus the runner's own time for its step, as medians.

Traffic goes to 127.0.0.1 only. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
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
from sqlalchemy.ext.asyncio import create_async_engine

LATENCY_CONFIG = """
version: 2.1
jobs:
  first:
    docker: [{image: cimg/base:stable}]
    steps:
      - run: python3 -c "import time; open('$STAMP_DIR/' + '$CIRCLE_PIPELINE_NUMBER', 'w').write(repr(time.time()))"
workflows:
  main:
    when: << pipeline.parameters.latency >>
    jobs: [first]
  throughput:
    when: {not: << pipeline.parameters.latency >>}
    jobs: [single]
parameters:
  latency: {type: boolean, default: false}
"""
SINGLE_JOB = """
  single:
    docker: [{image: cimg/base:stable}]
    steps: [{run: "true"}]
"""
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "circlet.cli", *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    config = LATENCY_CONFIG.replace("jobs:\n  first:", "jobs:" + SINGLE_JOB + "  first:")
    (path / ".circleci").mkdir()
    (path / ".circleci" / "config.yml").write_text(config)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)


async def postgres_database() -> str:
    base = os.environ.get("CIRCLET_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"circlet_bench_{uuid.uuid4().hex[:8]}"
    admin = base.replace("postgresql://", "postgresql+asyncpg://")

    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    engine = create_async_engine(
        base.replace("postgresql://", "postgresql+asyncpg://") + "/postgres", isolation_level="AUTOCOMMIT"
    )
    async with engine.connect() as connection:
        await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="circlet-bench-"))
    home = work / "home"
    home.mkdir()  # the server's home: admin commands run before the server make none
    # Jobs run as unprivileged users with a private /tmp when the runner is root: the stamps go
    # where every job user may write and the bench can read (outside /tmp, open to all).
    stamps = Path(tempfile.mkdtemp(prefix="circlet-bench-stamps-", dir="/run" if os.geteuid() == 0 else None))
    stamps.chmod(0o1777)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    # Steps run on the host, as when these figures were first taken (before podman was on the machine).
    env.update({"CIRCLET_HOME": str(home), "CIRCLET_RUNNER_CONTAINER_ENGINE": "none"})
    workers = "1"
    drop = None
    if args.backend == "postgresql":
        url = await postgres_database()
        drop = url
        env["CIRCLET_DATABASE_URL"] = url
        workers = "2"
    db_url = env.get("CIRCLET_DATABASE_URL", f"sqlite:///{home / 'circlet.db'}")
    account = cli(env, "admin", "bootstrap", "--org", "bench", "--user", "bench")
    make_repo(work / "repo")
    cli(env, "admin", "project", "create", "gh/bench/app", "--repo", str(work / "repo"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "circlet.cli", "serve", "--port", str(port), "--workers", workers, "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/v2"
    headers = {"Circle-Token": account["token"]}
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://").replace("sqlite:///", "sqlite+aiosqlite:///")
    )
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            for _ in range(600):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            await http.post("/project/gh/bench/app/envvar", json={"name": "STAMP_DIR", "value": str(stamps)})
            await asyncio.sleep(1.0)  # the embedded runner starts once the server answers

            latencies = []
            for _ in range(args.latency_runs):
                sent = time.time()
                response = await http.post("/project/gh/bench/app/pipeline", json={"parameters": {"latency": True}})
                stamp = stamps / str(response.json()["number"])
                deadline = time.monotonic() + 60
                while not stamp.exists() or not stamp.read_text():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"no job wrote {stamp} within 60 s: is the embedded runner running jobs?")
                    await asyncio.sleep(0.002)
                latencies.append((float(stamp.read_text()) - sent) * 1000)
                await asyncio.sleep(0.2)

            async def count_done() -> int:
                async with engine.connect() as connection:
                    query = sa.text("SELECT count(*) FROM jobs WHERE name = 'single' AND status = 'success'")
                    return int((await connection.execute(query)).scalar_one())

            limit = asyncio.Semaphore(32)

            async def trigger() -> None:
                async with limit:
                    response = await http.post("/project/gh/bench/app/pipeline")
                    assert response.status_code == 201, response.text

            started = time.monotonic()
            await asyncio.gather(*(trigger() for _ in range(args.pipelines)))
            triggered = time.monotonic() - started
            while await count_done() < args.pipelines:
                if time.monotonic() - started > 120:
                    break
                await asyncio.sleep(0.1)
            finished = time.monotonic() - started
            done = await count_done()
            async with engine.connect() as connection:
                rows = (
                    await connection.execute(
                        sa.text(
                            "SELECT j.queued_at, j.started_at, j.stopped_at, s.started_at, s.ended_at "
                            "FROM jobs j JOIN tasks t ON t.job_id = j.id JOIN step_runs s ON s.task_id = t.id "
                            "WHERE j.name = 'single'"
                        )
                    )
                ).all()
    finally:
        server.terminate()
        server.wait(timeout=30)
        await engine.dispose()
        if drop is not None:
            await drop_database(drop)

    def seconds(value: Any) -> float:
        if isinstance(value, str):
            value = value.replace(" ", "T")
            from datetime import datetime

            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return float(value.replace(tzinfo=None).timestamp())

    queue_ms = [(seconds(r[1]) - seconds(r[0])) * 1000 for r in rows]
    overhead_ms = [((seconds(r[2]) - seconds(r[1])) - (seconds(r[4]) - seconds(r[3]))) * 1000 for r in rows if r[4]]
    result = {
        "backend": args.backend,
        "api_processes": int(workers),
        "latency_ms_median": round(statistics.median(latencies), 1),
        "latency_ms_max": round(max(latencies), 1),
        "pipelines": args.pipelines,
        "finished": done,
        "trigger_seconds": round(triggered, 2),
        "all_done_seconds": round(finished, 2),
        "queue_wait_ms_median": round(statistics.median(queue_ms), 1) if queue_ms else None,
        "per_job_overhead_ms_median": round(statistics.median(overhead_ms), 1) if overhead_ms else None,
        "wall_ms_per_job": round(finished * 1000 / max(done, 1), 1),
    }
    print(json.dumps(result, indent=2))
    ok = result["latency_ms_median"] < 250 and done == args.pipelines and finished < 25
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--latency-runs", type=int, default=20)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
