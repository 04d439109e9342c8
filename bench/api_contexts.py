"""Benchmark of the Context API against a bare ASGI baseline (issue 2; method in docs/performance.md).

    python bench/api_contexts.py [--duration 10] [--prism PATH | --no-prism | --prism-rps N]

In one run, on one fresh SQLite database:

1. a temporary ``CIRCLET_HOME``; ``circlet admin bootstrap`` makes the org, user and token; 10,000
   contexts are seeded through circlet's own models, plus one context whose variables are set through
   the API;
2. ``circlet serve --no-access-log`` pinned to core 1, and ``wrk -t1 -c32 --latency`` pinned to core 0,
   for: the first page of ``GET /api/v2/context?owner-id=…``, a page 8,000 contexts deep (its token
   found by walking the pages), and ``PUT …/environment-variable/NAME``;
3. the same three requests against ``bench/baseline_asgi.py`` (a bare ASGI app running the same SQL
   with the stdlib ``sqlite3``) served by uvicorn with the same settings, pinned the same way;
4. if Stoplight's Prism is available (``--prism``; ``npm install --prefix /work/prism
   @stoplight/prism-cli@5.14.2``, the last release for Node 20), ``prism mock`` of the official spec
   (circlet's copy, ``src/circlet/openapi/circleci-api-v2.openapi.json``), static examples, pinned
   the same way, under the same wrk load of the first page (Prism serves it at ``/context``: the
   spec's paths without the ``/api/v2`` of its ``servers`` URL); otherwise the issue's reference
   figure for Prism, or ``--prism-rps``;
5. a table of req/s, p50 and p99, the ratios, and PASS/FAIL for each target. Exit status 1 if any
   target fails, 2 if the benchmark could not run.

Traffic goes to 127.0.0.1 only. Needs ``wrk`` (``apt-get install -y wrk``) and ``taskset``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
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
    prism_server,
    require_tools,
    wait_until_answers,
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
PRISM_INSTALLED = Path("/work/prism/node_modules/.bin/prism")  # npm install --prefix /work/prism ...


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


# -- Prism ------------------------------------------------------------------------------------------


def find_prism(option: str | None) -> str | None:
    """The prism command: ``--prism``, else ``$CIRCLET_BENCH_PRISM``, else ``prism`` on PATH, else
    ``/work/prism/node_modules/.bin/prism``; None if there is none. One that is named but is not
    there is an error."""
    named = option or os.environ.get("CIRCLET_BENCH_PRISM")
    if named:
        found = shutil.which(named)
        if found is None:
            fail(f"prism: {named} is not an executable")
        return found
    found = shutil.which("prism")
    if found is None and os.access(PRISM_INSTALLED, os.X_OK):
        found = str(PRISM_INSTALLED)
    return found


def prism_version(prism: str) -> str:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    try:
        done = subprocess.run([prism, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        fail(f"{prism} --version: {exc}")
        raise  # unreachable
    if done.returncode != 0:
        fail(f"{prism} --version exited with {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return f"Prism {done.stdout.strip()} (node {node or '?'})"


# -- the run ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run [10]")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each measurement [3]")
    parser.add_argument("--deep", type=int, default=8_000, help="how many contexts deep the deep page starts [8000]")
    parser.add_argument(
        "--prism",
        metavar="PATH",
        default=None,
        help="the prism command to measure [$CIRCLET_BENCH_PRISM, else prism on PATH, else "
        f"{PRISM_INSTALLED}, else not measured]",
    )
    parser.add_argument("--no-prism", action="store_true", help="do not measure Prism")
    parser.add_argument("--prism-spec", type=Path, default=None, help="the spec Prism serves [circlet's copy]")
    parser.add_argument(
        "--prism-rps", type=float, default=None, help="Prism's req/s if you measured it (then Prism is not run)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and print its path")
    args = parser.parse_args()
    wrk, taskset = require_tools()
    pin = pinning()
    prism, spec = None, None
    if args.prism_rps is not None:
        print(f"Prism not run: --prism-rps {args.prism_rps:.0f} given")
    elif args.no_prism:
        print("Prism not run: --no-prism")
    else:
        prism = find_prism(args.prism)
        if prism is None:
            print(
                f"note: Prism not found (--prism, $CIRCLET_BENCH_PRISM, PATH, {PRISM_INSTALLED}), so not measured;"
                " install it with: npm install --prefix /work/prism @stoplight/prism-cli@5.14.2"
            )
        else:
            from circlet.openapi.spec import OFFICIAL_SPEC

            spec = args.prism_spec or OFFICIAL_SPEC
            if not spec.is_file():
                fail(f"the spec for Prism is not there: {spec}")
            print(f"{prism_version(prism)}: {prism}, serving {spec}")
    # A SIGTERM ends the run like Ctrl-C, through the ``with`` blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    work = Path(tempfile.mkdtemp(prefix="circlet-bench-"))
    try:
        rows = run_benchmark(args, work, wrk, taskset, pin, prism, spec)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if "prism first" in rows:
        return report(rows, rows["prism first"].rps, "measured")
    if args.prism_rps is not None:
        return report(rows, args.prism_rps, "given with --prism-rps")
    return report(rows, PRISM_REFERENCE_RPS, "the issue's reference figure, not measured here")


def run_benchmark(
    args: argparse.Namespace, work: Path, wrk: str, taskset: str, pin: bool, prism: str | None, spec: Path | None
) -> dict[str, Result]:
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

    if prism is not None:
        assert spec is not None
        # The list operation is ``/context`` in the spec; its ``servers`` URL carries the ``/api/v2``,
        # which Prism does not serve. Same query, same headers (any Circle-Token passes its check).
        prism_path = list_path.removeprefix("/api/v2")
        with prism_server(work, prism, spec, pin, taskset) as mock:
            answer = wait_until_answers(mock, prism_path, token, timeout=60)
            if not isinstance(answer, dict) or "items" not in answer:
                fail(f"Prism's answer to {prism_path} is not a context list: {answer}")
            print("prism    first ...", flush=True)
            results["prism first"] = load(
                wrk, taskset, mock, prism_path, scripts["get"], args.duration, args.warmup, pin
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


def report(results: dict[str, Result], prism: float, source: str) -> int:
    print()
    print(f"wrk -t1 -c{CONNECTIONS}, server on core 1, wrk on core 0; {CONTEXTS} contexts, SQLite")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} (2 would mean only wrk and the server)")
    print_results(results)

    def ratio(a: str, b: str) -> float:
        return results[a].rps / results[b].rps

    checks: list[tuple[str, float, str, bool]] = []
    ours = [r for name, r in results.items() if not name.startswith("prism")]
    failures = sum(r.bad_responses + r.socket_errors for r in ours)
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
    if "prism first" in results:
        # A non-2xx answer from Prism is not the list's answer: its req/s would not be comparable.
        bad = results["prism first"].bad_responses
        checks.append(("Prism: non-2xx responses", bad, "= 0", bad == 0))
    value = results["circlet first"].rps / prism
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
    if "prism first" in results:
        value = results["prism first"].cpu_us / results["circlet first"].cpu_us
        checks.append(("(info) list first: Prism / circlet CPU time per request", value, "", True))
        errors = results["prism first"].socket_errors
        checks.append(("(info) Prism: socket errors (timeouts: 2 s)", errors, "", True))

    return print_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
