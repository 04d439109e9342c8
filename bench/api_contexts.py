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
import os
import shutil
import sys
import tempfile
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _harness import (
    CONNECTIONS,
    Result,
    baseline_server,
    bench_env,
    bootstrap,
    check,
    circlet_server,
    fail,
    http,
    load,
    pinning,
    print_checks,
    print_results,
    require_tools,
    write_lua,
)

CONTEXTS = 10_000
ENV_VARS = 5
# Targets of issue 2.
LIST_VS_BASELINE = 0.40
PUT_VS_BASELINE = 0.25
DEEP_VS_FIRST = 0.90
P99_LIMIT_MS = 50.0
PRISM_FACTOR = 3.0
PRISM_REFERENCE_RPS = 1100.0  # the figure for Prism's mock of the spec on this machine kind


# -- setup ------------------------------------------------------------------------------------------


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
    pin = pinning()

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
    # 10,000 contexts in one org: the limit is raised for the benchmark.
    env = bench_env(home, CIRCLET_LIMITS__CONTEXTS_PER_ORG=str(CONTEXTS * 2))
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
    results: dict[str, Result] = {}

    with circlet_server(work, env, pin, taskset) as circlet:
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

    with baseline_server(work, env | {"BASELINE_DB": str(database)}, pin, taskset) as baseline:
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
    print_results(results)

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

    return print_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
