"""Benchmark of the Context API against a bare ASGI baseline (issue 2; method in docs/performance.md).

    python bench/api_contexts.py [--duration 10]

In one run, on one fresh SQLite database:

1. a temporary ``CIRCLET_HOME``; ``circlet admin bootstrap`` makes the org, user and token; 10,000
   contexts are seeded through circlet's own models, plus one context whose variables are set through
   the API;
2. ``circlet serve --no-access-log`` pinned to core 1, and ``wrk -t1 -c32 --latency`` pinned to core 0,
   for: the first page of ``GET /api/v2/context?owner-id=…``, a page 8,000 contexts deep (its token
   found by walking the pages), and ``PUT …/environment-variable/NAME``;
3. the same three requests against ``bench/baseline_asgi.py`` (a bare ASGI app running the same SQL
   with the stdlib ``sqlite3``) served by uvicorn with the same settings, pinned the same way;
4. a table of req/s, p50 and p99, the ratios, and PASS/FAIL for each target. Exit status 1 if any
   target fails, 2 if the benchmark could not run.

Traffic goes to 127.0.0.1 only. Needs ``wrk`` (``apt-get install -y wrk``) and ``taskset``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CONTEXTS = 10_000
ENV_VARS = 5
CONNECTIONS = 32
# Targets of issue 2.
LIST_VS_BASELINE = 0.40
PUT_VS_BASELINE = 0.25
DEEP_VS_FIRST = 0.90
P99_LIMIT_MS = 50.0
PRISM_FACTOR = 3.0
PRISM_REFERENCE_RPS = 1100.0  # the figure for Prism's mock of the spec on this machine kind


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad_responses: int
    socket_errors: int
    cpu_us: float = 0.0  # the server's CPU time per request: unlike req/s, not skewed by other load


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all threads, from /proc (0 where there is none)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        return 0.0
    return total / os.sysconf("SC_CLK_TCK")


def fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def require_tools() -> tuple[str, str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        fail("wrk is not installed; install it with: apt-get install -y wrk")
    taskset = shutil.which("taskset")
    if taskset is None:
        fail("taskset is not installed; install it with: apt-get install -y util-linux")
    circlet = shutil.which("circlet", path=str(Path(sys.executable).parent)) or shutil.which("circlet")
    if circlet is None:
        fail("the circlet command is not on PATH; install the package (pip install -e .) first")
    return wrk, taskset  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Circle-Token", token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# -- setup ------------------------------------------------------------------------------------------


def bootstrap(env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "circlet.cli", "admin", "bootstrap", "--org", "acme", "--user", "alice"]
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


def seed_contexts(database_url: str, org_id: uuid.UUID) -> uuid.UUID:
    """10,000 contexts with distinct creation times, and one more for the variables; returns its id."""
    from sqlalchemy import insert

    from circlet.db.engine import create_database
    from circlet.db.models import Context

    start = datetime.now(UTC) - timedelta(days=30)
    rows = [
        {"id": uuid.uuid4(), "org_id": org_id, "name": f"context-{i:05d}", "created_at": start + timedelta(seconds=i)}
        for i in range(CONTEXTS)
    ]
    env_context = uuid.uuid4()
    rows.append({"id": env_context, "org_id": org_id, "name": "bench-env", "created_at": start - timedelta(days=1)})

    async def run() -> None:
        database = create_database(database_url)
        try:
            async with database.writing() as session:
                await session.execute(insert(Context), rows)
        finally:
            await database.dispose()

    asyncio.run(run())
    return env_context


# -- servers ----------------------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path):
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        fail(f"{self.name} did not start listening on port {self.port}")
        raise AssertionError  # unreachable

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# -- load -------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        rps, p50, p99, requests, int(bad.group(1)) if bad else 0, sum(map(int, errors.groups())) if errors else 0
    )


def write_lua(directory: Path, name: str, token: str, method: str = "GET", body: Any = None) -> Path:
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Circle-Token"] = "{token}"']
    if body is not None:
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def load(
    wrk: str, taskset: str, server: Server, path: str, script: Path, duration: int, warmup: int, pin: bool
) -> Result:
    url = server.url + path

    def run(seconds: int) -> str:
        command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url]
        if pin:
            command = [taskset, "-c", "0", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    if warmup:
        run(warmup)
    assert server.process is not None
    cpu_before = cpu_seconds(server.process.pid)
    output = run(duration)
    cpu_used = cpu_seconds(server.process.pid) - cpu_before
    result = parse_wrk(output)
    if result.requests == 0:
        fail(f"{url}: no request completed:\n{output}")
    result.cpu_us = cpu_used * 1e6 / result.requests
    return result


# -- the run ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run [10]")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each measurement [3]")
    parser.add_argument("--deep", type=int, default=8_000, help="how many contexts deep the deep page starts [8000]")
    parser.add_argument("--prism-rps", type=float, default=None, help="Prism's req/s if you measured it")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    args = parser.parse_args()
    wrk, taskset = require_tools()
    pin = (os.cpu_count() or 1) >= 2
    if not pin:
        print("warning: fewer than 2 cores, so the server and wrk are not pinned", file=sys.stderr)

    work = Path(tempfile.mkdtemp(prefix="circlet-bench-"))
    try:
        rows = run_benchmark(args, work, wrk, taskset, pin)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report(rows, args.prism_rps)


def run_benchmark(args: argparse.Namespace, work: Path, wrk: str, taskset: str, pin: bool) -> dict[str, Result]:
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    env |= {
        "CIRCLET_HOME": str(home),
        # Limits raised for the benchmark: 10,000 contexts in one org, and a rate limit that still
        # runs on every request but that wrk at full speed does not reach.
        "CIRCLET_LIMITS__CONTEXTS_PER_ORG": str(CONTEXTS * 2),
        "CIRCLET_RATE_LIMIT_PER_MINUTE": str(1_000_000_000),
    }
    database = home / "circlet.db"
    print(f"seeding {CONTEXTS} contexts in {database} ...", flush=True)
    boot = bootstrap(env)
    token, org_id = boot["token"], uuid.UUID(boot["org"]["id"])
    env_context = seed_contexts(f"sqlite+aiosqlite:///{database}", org_id)

    list_path = f"/api/v2/context?owner-id={org_id}"
    put_path = f"/api/v2/context/{env_context}/environment-variable/BENCH_VALUE"
    put_body = {"value": "s3cr3t-" + "x" * 32}
    scripts = {
        "get": write_lua(work, "get", token),
        "put": write_lua(work, "put", token, "PUT", put_body),
    }
    pinned = [taskset, "-c", "1"] if pin else []
    results: dict[str, Result] = {}

    circlet_port = free_port()
    circlet = Server(
        "circlet serve",
        [*pinned, sys.executable, "-m", "circlet.cli", "serve", "--port", str(circlet_port), "--no-access-log"],
        env,
        circlet_port,
        work / "circlet.log",
    )
    with circlet:
        for i in range(ENV_VARS):
            status, _ = http(
                "PUT",
                f"{circlet.url}/api/v2/context/{env_context}/environment-variable/VAR_{i}",
                token,
                {"value": f"value-{i}"},
            )
            assert status == 200, status
        deep_token = walk(circlet.url + list_path, token, args.deep)
        deep_path = f"{list_path}&page-token={urllib.parse.quote(deep_token)}"
        first = check(circlet.url + list_path, token)
        deep = check(circlet.url + deep_path, token)
        check(circlet.url + put_path, token, "PUT", put_body)
        for name, path, script in (("first", list_path, "get"), ("deep", deep_path, "get"), ("put", put_path, "put")):
            print(f"circlet  {name:5} ...", flush=True)
            results[f"circlet {name}"] = load(
                wrk, taskset, circlet, path, scripts[script], args.duration, args.warmup, pin
            )

    baseline_port = free_port()
    baseline = Server(
        "baseline",
        [
            *pinned,
            sys.executable,
            "-m",
            "uvicorn",
            "baseline_asgi:app",
            "--app-dir",
            str(BENCH_DIR),
            "--port",
            str(baseline_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--workers",
            "1",
            "--no-access-log",
            "--no-server-header",
            "--log-level",
            "warning",
        ],
        env | {"BASELINE_DB": str(database)},
        baseline_port,
        work / "baseline.log",
    )
    with baseline:
        # The baseline must answer with the same rows as circlet, or the comparison means nothing.
        for path, expected in ((list_path, first), (deep_path, deep)):
            got = check(baseline.url + path, token)
            if got["items"] != expected["items"]:
                fail(f"the baseline's page differs from circlet's for {path}")
        check(baseline.url + put_path, token, "PUT", put_body)
        for name, path, script in (("first", list_path, "get"), ("deep", deep_path, "get"), ("put", put_path, "put")):
            print(f"baseline {name:5} ...", flush=True)
            results[f"baseline {name}"] = load(
                wrk, taskset, baseline, path, scripts[script], args.duration, args.warmup, pin
            )
    return results


def check(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    status, answer = http(method, url, token, body)
    if status != 200:
        fail(f"{method} {url}: {status} {answer}")
    return answer


def walk(url: str, token: str, depth: int) -> str:
    """The real ``next_page_token`` of the page that starts ``depth`` contexts in."""
    page_token = None
    for _ in range(depth // 20):
        page_url = url + (f"&page-token={urllib.parse.quote(page_token)}" if page_token else "")
        page_token = check(page_url, token)["next_page_token"]
        assert page_token, "ran out of pages"
    return page_token or ""


def report(results: dict[str, Result], prism_rps: float | None) -> int:
    print()
    print(f"wrk -t1 -c{CONNECTIONS}, server on core 1, wrk on core 0; {CONTEXTS} contexts, SQLite")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} (2 would mean only wrk and the server)")
    print(
        f"{'case':16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10} {'requests':>9}"
        f" {'non-2xx':>8} {'sock err':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:16} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.cpu_us:10.0f} {r.requests:9d}"
            f" {r.bad_responses:8d} {r.socket_errors:8d}"
        )

    def ratio(a: str, b: str) -> float:
        return results[a].rps / results[b].rps

    checks: list[tuple[str, float, str, bool]] = []
    failures = sum(r.bad_responses + r.socket_errors for r in results.values())
    checks.append(("non-2xx responses and socket errors (timeouts: 2 s)", failures, "= 0", failures == 0))
    for case in ("first", "deep"):
        value = ratio(f"circlet {case}", f"baseline {case}")
        checks.append(
            (f"list {case}: circlet / baseline req/s", value, f">= {LIST_VS_BASELINE:.2f}", value >= LIST_VS_BASELINE)
        )
        p99 = results[f"circlet {case}"].p99_ms
        checks.append((f"list {case}: circlet p99 ms", p99, f"< {P99_LIMIT_MS:.0f}", p99 < P99_LIMIT_MS))
    value = ratio("circlet deep", "circlet first")
    checks.append(("circlet deep / first req/s", value, f">= {DEEP_VS_FIRST:.2f}", value >= DEEP_VS_FIRST))
    value = ratio("circlet put", "baseline put")
    checks.append(("put: circlet / baseline req/s", value, f">= {PUT_VS_BASELINE:.2f}", value >= PUT_VS_BASELINE))
    prism = prism_rps or PRISM_REFERENCE_RPS
    value = results["circlet first"].rps / prism
    source = "measured" if prism_rps else "the issue's reference figure, not measured here"
    checks.append(
        (
            f"list first: circlet / Prism ({prism:.0f} req/s, {source})",
            value,
            f">= {PRISM_FACTOR:.1f}",
            value >= PRISM_FACTOR,
        )
    )
    value = ratio("baseline deep", "baseline first")
    checks.append(("(info) baseline deep / first req/s", value, "", True))
    for case in ("first", "deep", "put"):
        value = results[f"baseline {case}"].cpu_us / results[f"circlet {case}"].cpu_us
        checks.append((f"(info) {case}: baseline / circlet CPU time per request", value, "", True))

    print()
    for label, value, target, passed in checks:
        verdict = "" if not target else ("PASS" if passed else "FAIL")
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{verdict:4}  {label}: {shown} {('(target ' + target + ')') if target else ''}")
    return 0 if all(passed for *_, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
