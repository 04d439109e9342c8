"""Benchmark of the runner's I/O (issue 6; results in docs/performance.md).

    python bench/runner_io.py [--backend sqlite|postgresql] [--quick] [--rounds 3] [--profile DIR] [--keep]

1. A temporary directory holds everything (server home, the runner's work directory, the baseline's
   files), so every figure is on the same disk. A git repository made here holds the config and
   ``gen.py``, which writes the cache's files (half random, half compressible text; seeded, so the
   job and the baseline write the same bytes).
2. ``circlet serve --no-runner`` (SQLite in the home; PostgreSQL, from ``$CIRCLET_BENCH_POSTGRES`` or
   127.0.0.1:5432, on a fresh database) and a separate agent process, ``python -m circlet.agent`` (the
   agent ``circlet serve`` starts for itself; ``circlet runner``'s idle RSS is reported apart: it
   starts the same agent, without the server's imports), with a runner token of class ``bench/io``,
   ``--docker host`` and ``CIRCLET_RUNNER_CONTAINER_ENGINE=none``: the jobs are ``machine`` jobs that run on this host.
3. Each round (3; 1 with ``--quick``) runs three pipelines of one job each:
   - output: one step prints 51.8 MiB (``head -c … /dev/urandom | base64``). The runner's peak RSS is
     the agent's ``VmHWM``, reset before each job (its children here are ``bash``, ``head`` and
     ``base64``, not Python). The storing rate is the bytes stored in ``step_output`` over the time from
     the step's start to the last chunk's arrival (its ``created_at``): the producer, the runner and the
     server together; also over the first to the last chunk's arrival;
   - save: a step writes 200 MiB in 100 files with ``gen.py``, then ``save_cache``;
   - restore: ``restore_cache`` of the newest of those caches, and a check that all files are there.
   Each storage step's time is its ``start_time``/``end_time`` from API v1.1's job details.
4. Baselines, in the same run, on the same disk: before each save, ``tar -cf`` of the same files into a
   file plus ``cp`` of it; before each restore, ``cp`` of that tar plus ``tar -xf``; their CPU time (from
   ``getrusage``) against the server's and the runner's during the job. For output, once at the end: the
   same bytes piped through ``cat > file``, and inserted by a bare ``sqlite3`` script in the chunk sizes
   the server stored, one transaction per chunk as the server does.

Prints the medians over the rounds (each round in brackets), the ratios and PASS/FAIL per target;
exit status 1 if a target is missed. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import cpu_seconds, free_port, print_checks  # noqa: E402

MIB = 1024 * 1024
MB = 1_000_000
RESOURCE_CLASS = "bench/io"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}

GEN = '''"""Writes FILES files of SIZE bytes under DIR: even ones random, odd ones compressible text."""
import random, sys
from pathlib import Path
target, files, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
target.mkdir(parents=True, exist_ok=True)
rng = random.Random(6)
for i in range(files):
    sub = target / f"d{i % 10}"
    sub.mkdir(exist_ok=True)
    if i % 2 == 0:
        data = rng.randbytes(size)
    else:
        line = b"".join(b"%08d the quick brown fox jumps over the lazy dog %d\\n" % (n, rng.randrange(10**6))
                        for n in range(4096))
        data = (line * (size // len(line) + 1))[:size]
    (sub / f"f{i:03d}.bin").write_bytes(data)
'''

CONFIG = """
version: 2.1
parameters:
  mode: {type: enum, enum: [output, save, restore], default: output}
executors:
  here: {machine: true, resource_class: bench/io}
jobs:
  output:
    executor: here
    steps:
      - run: {name: print, command: "head -c OUTPUT_RAW /dev/urandom | base64"}
  save:
    executor: here
    steps:
      - checkout
      - run: {name: generate, command: "python3 gen.py data CACHE_FILES CACHE_FILE_SIZE"}
      - save_cache: {key: 'bench-cache-v1-<< pipeline.number >>', paths: [data]}
  restore:
    executor: here
    steps:
      - restore_cache: {keys: [bench-cache-v1-]}
      - run: {name: check, command: "test $(find data -type f | wc -l) = CACHE_FILES && du -sb data"}
workflows:
  output:
    when: {equal: [output, << pipeline.parameters.mode >>]}
    jobs: [output]
  save:
    when: {equal: [save, << pipeline.parameters.mode >>]}
    jobs: [save]
  restore:
    when: {equal: [restore, << pipeline.parameters.mode >>]}
    jobs: [restore]
"""


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "circlet.cli", *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def make_repo(path: Path, config: str) -> None:
    (path / ".circleci").mkdir(parents=True)
    (path / ".circleci" / "config.yml").write_text(config)
    (path / "gen.py").write_text(GEN)
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env)


def proc_status(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` field in bytes (``VmHWM``, ``VmRSS``); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def idle_rss(command: list[str], env: dict[str, str]) -> float:
    """Peak RSS (MiB) of a command once it has settled (RSS unchanged for a second, at most 15 s)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        last, deadline = -1, time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(1.0)
            rss = proc_status(process.pid, "VmRSS")
            if rss == last:
                break
            last = rss
        return proc_status(process.pid, "VmHWM") / MIB
    finally:
        process.terminate()
        process.wait(timeout=30)


def reset_peak(pid: int) -> None:
    """Reset the process's ``VmHWM`` to its current RSS (``clear_refs`` 5; we own the process)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def profile(directory: Path, name: str, pid: int) -> subprocess.Popen[bytes]:
    """``py-spy record`` of a process until it ends, as collapsed stacks in ``DIRECTORY/NAME.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    output = str(directory / f"{name}.txt")
    command = ["py-spy", "record", "--format", "raw", "--rate", "200", "-p", str(pid), "-o", output]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seconds(value: Any) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    return float(value.replace(tzinfo=None).timestamp())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def postgres_database() -> str:
    base = os.environ.get("CIRCLET_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"circlet_bench_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(base.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT")
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


class Api:
    def __init__(self, http: httpx.AsyncClient, slug: str) -> None:
        self.http, self.slug = http, slug

    async def get(self, path: str) -> Any:
        response = await self.http.get(path)
        response.raise_for_status()
        return response.json()

    async def run_job(self, mode: str, timeout: float) -> dict[str, Any]:
        """Trigger a pipeline of ``mode``, wait for its one job to end; the job's v1.1 details."""
        response = await self.http.post(f"/api/v2/project/{self.slug}/pipeline", json={"parameters": {"mode": mode}})
        response.raise_for_status()
        pipeline = response.json()
        deadline = time.monotonic() + timeout
        while True:
            workflows = (await self.get(f"/api/v2/pipeline/{pipeline['id']}/workflow"))["items"]
            if workflows:
                jobs = (await self.get(f"/api/v2/workflow/{workflows[0]['id']}/job"))["items"]
                if jobs and jobs[0]["status"] not in ("queued", "running", "not_running", "blocked"):
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"error: the {mode} job did not end within {timeout:.0f} s")
            await asyncio.sleep(0.5)  # step times come from the API; polling less costs the server less
        job = jobs[0]
        details: dict[str, Any] = await self.get(f"/api/v1.1/project/{self.slug}/{job['job_number']}")
        if job["status"] != "success":
            raise SystemExit(f"error: the {mode} job ended {job['status']}: {json.dumps(details['steps'])[:2000]}")
        return details


def step_seconds(details: dict[str, Any], name: str) -> float:
    for step in details["steps"]:
        for action in step["actions"]:
            if action["name"] == name:
                return seconds(action["end_time"]) - seconds(action["start_time"])
    raise SystemExit(f"error: no step {name!r} in {[s['name'] for s in details['steps']]}")


# -- baselines ------------------------------------------------------------------------------------


def output_baselines(work: Path, raw_bytes: int, chunk_sizes: list[int]) -> tuple[float, float]:
    """Seconds to (a) pipe the same output through ``cat > file``, (b) insert it with bare sqlite3 in
    the chunk sizes the server stored, one committed transaction per chunk (WAL, synchronous=NORMAL,
    as circlet's SQLite)."""
    target = work / "baseline-output.txt"
    cat = timed(["bash", "-c", f"head -c {raw_bytes} /dev/urandom | base64 | cat > {target}"])
    data = target.read_bytes()
    target.unlink()
    database = work / "baseline-output.db"
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE step_output"
        " (id INTEGER PRIMARY KEY, task_id TEXT, step_index INTEGER, data BLOB, created_at TEXT)"
    )
    task = uuid.uuid4().hex
    started = time.perf_counter()
    offset = 0
    for size in chunk_sizes:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO step_output (task_id, step_index, data, created_at) VALUES (?, 0, ?, ?)",
            (task, data[offset : offset + size], datetime.utcnow().isoformat(" ")),
        )
        connection.execute("COMMIT")
        offset += size
    insert = time.perf_counter() - started
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return cat, insert


class CacheBaseline:
    """``tar -cf`` of the same files into a file plus ``cp`` of it (save); ``cp`` of that tar plus
    ``tar -xf`` (restore); on the same disk, timed once per round, between circlet's jobs."""

    def __init__(self, work: Path, files: int, size: int) -> None:
        self.base = work / "baseline-cache"
        self.source = self.base / "src"
        generate = [sys.executable, str(work / "repo" / "gen.py"), str(self.source / "data"), str(files), str(size)]
        subprocess.run(generate, check=True)

    def save(self) -> float:
        made, stored = self.base / "made.tar", self.base / "stored.tar"
        elapsed = timed(["tar", "-cf", str(made), "-C", str(self.source), "data"])
        elapsed += timed(["cp", str(made), str(stored)])
        self.last_sync = timed(["sync", str(stored)])
        made.unlink()
        return elapsed

    last_sync = 0.0
    """The ``fsync`` of the copy after the last ``save``: circlet's blob store syncs every blob before
    it records it (a blob is whole or absent after a crash); ``cp`` does not."""

    def restore(self) -> float:
        stored, fetched, unpacked = self.base / "stored.tar", self.base / "fetched.tar", self.base / "out"
        unpacked.mkdir()
        elapsed = timed(["cp", str(stored), str(fetched)]) + timed(["tar", "-xf", str(fetched), "-C", str(unpacked)])
        for path in (stored, fetched):
            path.unlink()
        shutil.rmtree(unpacked)
        return elapsed


# -- the run --------------------------------------------------------------------------------------


async def output_rows(db_url: str, job_id: str) -> tuple[list[int], float, float]:
    """Chunk sizes stored for a job's first step, in order, and the first and last arrival."""
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://").replace("sqlite:///", "sqlite+aiosqlite:///")
    )
    job = uuid.UUID(job_id).hex if db_url.startswith("sqlite") else job_id
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.text(
                        "SELECT length(o.data), o.created_at FROM step_output o JOIN tasks t ON t.id = o.task_id "
                        "WHERE t.job_id = :job AND o.step_index = 0 ORDER BY o.id"
                    ),
                    {"job": job},
                )
            ).all()
    finally:
        await engine.dispose()
    return [int(r[0]) for r in rows], seconds(rows[0][1]), seconds(rows[-1][1])


async def run(args: argparse.Namespace) -> int:
    output_raw = (8 if args.quick else 38) * MIB + (0 if args.quick else MIB * 3 // 8)  # base64: 10.8 / 51.8 MiB
    cache_files = 20 if args.quick else 100
    cache_file_size = 2 * MIB
    rounds = args.rounds or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="circlet-bench-io-"))
    home = work / "home"
    home.mkdir()  # the server's home: admin commands run before the server make none
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    env["CIRCLET_HOME"] = str(home)
    drop = None
    if args.backend == "postgresql":
        drop = env["CIRCLET_DATABASE_URL"] = await postgres_database()
    db_url = env.get("CIRCLET_DATABASE_URL", f"sqlite:///{home / 'circlet.db'}")
    config = (
        CONFIG.replace("OUTPUT_RAW", str(output_raw))
        .replace("CACHE_FILES", str(cache_files))
        .replace("CACHE_FILE_SIZE", str(cache_file_size))
    )
    account = cli(env, "admin", "bootstrap", "--org", "bench", "--user", "bench")
    make_repo(work / "repo", config)
    cli(env, "admin", "project", "create", "gh/bench/app", "--repo", str(work / "repo"))
    runner_token = cli(env, "admin", "runner", "token", "create", "--resource-class", RESOURCE_CLASS)["token"]
    baseline = CacheBaseline(work, cache_files, cache_file_size)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = (work / "server.log").open("wb")
    runner_log = (work / "runner.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "circlet.cli", "serve", "--port", str(port), "--no-runner", "--no-access-log"],
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    runner: subprocess.Popen[bytes] | None = None
    profilers: list[subprocess.Popen[bytes]] = []
    report: dict[str, Any] = {"backend": args.backend, "quick": args.quick, "rounds": rounds}
    per_round: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        per_round.setdefault(name, []).append(value)

    try:
        async with httpx.AsyncClient(base_url=url, headers={"Circle-Token": account["token"]}, timeout=60) as http:
            for _ in range(600):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            runner_env = {
                **env,
                "CIRCLET_RUNNER_TOKEN": runner_token,
                "CIRCLET_RUNNER_CONTAINER_ENGINE": "none",  # jobs run on this host, never in a container
            }
            report["circlet_runner_cli_idle_rss_mb"] = idle_rss(
                [
                    sys.executable,
                    "-c",
                    "from circlet.entry import main; main()",
                    "runner",
                    "--url",
                    url,
                    "--resource-class",
                    RESOURCE_CLASS,
                ],
                runner_env,
            )
            # The agent as `circlet serve` starts its own: `python -m circlet.agent`, the same agent as
            # `circlet runner` without the server-side commands that `circlet`'s own module imports.
            runner = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "circlet.agent",
                    "--url",
                    url,
                    "--resource-class",
                    RESOURCE_CLASS,
                    "--docker",
                    "host",
                    "--work-dir",
                    str(work / "runner"),
                    "--name",
                    "bench",
                ],  # fmt: skip
                env=runner_env,
                stdout=runner_log,
                stderr=subprocess.STDOUT,
            )
            api = Api(http, "gh/bench/app")
            await asyncio.sleep(3.0)  # the agent imports and long-polls; its idle RSS is read after that
            report["runner_idle_rss_mb"] = proc_status(runner.pid, "VmHWM") / MIB
            if args.profile:
                profilers = [profile(args.profile, n, p.pid) for n, p in (("server", server), ("runner", runner))]

            for _ in range(rounds):
                # -- output -----------------------------------------------------------------------
                reset_peak(runner.pid)
                server_cpu, runner_cpu = cpu_seconds(server.pid), cpu_seconds(runner.pid)
                details = await api.run_job("output", timeout=300)
                record("server_cpu_output_s", cpu_seconds(server.pid) - server_cpu)
                record("runner_cpu_output_s", cpu_seconds(runner.pid) - runner_cpu)
                record("runner_peak_rss_output_mb", proc_status(runner.pid, "VmHWM") / MIB)
                step = step_seconds(details, "print")
                sizes, first, last = await output_rows(db_url, details["workflows"]["job_id"])
                stored = sum(sizes)
                start = seconds(next(s for s in details["steps"] if s["name"] == "print")["actions"][0]["start_time"])
                record("output_step_s", step)
                record("output_rate_mb_s", stored / MB / max(step, last - start))
                record("output_rate_chunks_mb_s", stored / MB / max(last - first, 1e-6))

                # -- cache ------------------------------------------------------------------------
                reset_peak(runner.pid)
                cpu = children_cpu()
                record("baseline_save_s", baseline.save())
                record("baseline_save_sync_s", baseline.last_sync)
                record("baseline_save_cpu_s", children_cpu() - cpu)
                cpu = cpu_seconds(server.pid) + cpu_seconds(runner.pid)
                details = await api.run_job("save", timeout=600)
                record("save_job_cpu_s", cpu_seconds(server.pid) + cpu_seconds(runner.pid) - cpu)
                record("save_cache_s", step_seconds(details, "save_cache"))
                cpu = children_cpu()
                record("baseline_restore_s", baseline.restore())
                record("baseline_restore_cpu_s", children_cpu() - cpu)
                cpu = cpu_seconds(server.pid) + cpu_seconds(runner.pid)
                details = await api.run_job("restore", timeout=600)
                record("restore_job_cpu_s", cpu_seconds(server.pid) + cpu_seconds(runner.pid) - cpu)
                record("restore_cache_s", step_seconds(details, "restore_cache"))
                record("runner_peak_rss_cache_mb", proc_status(runner.pid, "VmHWM") / MIB)
                record("save_ratio", per_round["save_cache_s"][-1] / per_round["baseline_save_s"][-1])
                record("restore_ratio", per_round["restore_cache_s"][-1] / per_round["baseline_restore_s"][-1])
            report["output_bytes"] = stored
            report["output_chunks"] = len(sizes)
            report["cache_bytes"] = cache_files * cache_file_size
    finally:
        for profiler in profilers:  # py-spy writes its file on SIGINT
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        for process in (runner, server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if drop is not None:
            await drop_database(drop)

    # After the servers are gone, so nothing else of ours competes for the disk or the CPUs.
    cat_s, insert_s = output_baselines(work, output_raw, sizes)
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    report |= {
        "baseline_cat_mb_s": stored / MB / cat_s,
        "baseline_sqlite_insert_mb_s": stored / MB / insert_s,
    }
    for name, values in per_round.items():
        report[name] = statistics.median(values)
    report["load_average"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
    for key, value in report.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        rounds_shown = " ".join(f"{v:.3f}" for v in per_round.get(key, [])) if rounds > 1 else ""
        print(f"{key:32} {shown}  {('[' + rounds_shown + ']') if rounds_shown else ''}")
    peak = max(per_round["runner_peak_rss_output_mb"] + per_round["runner_peak_rss_cache_mb"])
    rate = report["output_rate_mb_s"]
    checks = [
        ("runner peak RSS (VmHWM), MiB, output and cache jobs, worst round", peak, "< 100", peak < 100),
        ("output stored, MB/s from the step's start to the last chunk (median)", rate, ">= 20", rate >= 20),
        ("output rate / cat > file", rate / report["baseline_cat_mb_s"], "", True),
        ("output rate / bare sqlite3 inserts", rate / report["baseline_sqlite_insert_mb_s"], "", True),
        (
            "save_cache time / (tar -cf + cp) (median of rounds)", report["save_ratio"], "<= 2",
            report["save_ratio"] <= 2,
        ),
        (
            "restore_cache time / (cp + tar -xf) (median of rounds)", report["restore_ratio"], "<= 2",
            report["restore_ratio"] <= 2,
        ),
        (
            "save_cache time / (tar -cf + cp + fsync of the copy), for information",
            report["save_cache_s"] / (report["baseline_save_s"] + report["baseline_save_sync_s"]), "", True,
        ),
        (
            "save job CPU (server + runner) / baseline CPU",
            report["save_job_cpu_s"] / report["baseline_save_cpu_s"], "", True,
        ),
        (
            "restore job CPU (server + runner) / baseline CPU",
            report["restore_job_cpu_s"] / report["baseline_restore_cpu_s"], "", True,
        ),
    ]  # fmt: skip
    return print_checks(checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="10.8 MiB of output and a 40 MiB cache")
    parser.add_argument("--rounds", type=int, default=0, help="rounds of the three jobs (default 3; 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    parser.add_argument("--profile", type=Path, help="py-spy the server and the runner into this directory")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
