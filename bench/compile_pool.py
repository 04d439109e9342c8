"""Benchmark of where a server compiles configs (issue 23; results in docs/performance.md).

    python bench/compile_pool.py [--compiles 200]

1. Overhead per compile: a one-job config compiled ``--compiles`` times on the event loop (what
   the server did before issue 23), then through ``CompilePool`` (a worker process: the request
   pickled over a socket, compiled and rendered there, the result pickled back); medians, and the
   difference is the pool's cost per compile.
2. What a heavy compile does to everything else: a 1000-job matrix compiled (a) on the event loop,
   (b) on a thread (``asyncio.to_thread``), (c) in the pool, while a task measures how late a
   1 ms ``asyncio.sleep`` wakes up (the event loop's lag, which every request in flight waits).
   A thread holds the GIL for most of the compile, so it does not keep the loop free: the pool does.

Exit status 1 if the pool adds more than 5 ms per compile (median) or lets the loop lag 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from circlet.config import ExpansionLimits  # noqa: E402
from circlet.engine.compiling import CompilePool, CompileRequest, compile_request  # noqa: E402

ONE_JOB = """
version: 2.1
jobs:
  single:
    docker: [{image: cimg/base:stable}]
    steps: [checkout, {run: "true"}]
workflows:
  main:
    jobs: [single]
"""
A_VALUES, B_VALUES = ", ".join(map(str, range(40))), ", ".join(map(str, range(25)))
HEAVY = f"""
version: 2.1
jobs:
  build:
    docker: [{{image: cimg/base:stable}}]
    parameters: {{a: {{type: integer}}, b: {{type: integer}}}}
    steps: [checkout, {{run: echo << parameters.a >> << parameters.b >>}}]
workflows:
  main:
    jobs:
      - build: {{matrix: {{parameters: {{a: [{A_VALUES}], b: [{B_VALUES}]}}}}}}
"""


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


async def loop_lag_during(action: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(the action's milliseconds, the event loop's worst lag in milliseconds meanwhile)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - started) * 1000 - 1)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.01)
    elapsed = await timed(action)
    done.set()
    await prober
    return elapsed, max(lags)


async def run(args: argparse.Namespace) -> int:
    org = uuid.uuid4()
    one = CompileRequest(ONE_JOB)
    heavy = CompileRequest(HEAVY, limits=ExpansionLimits())
    pool = CompilePool(workers=2, timeout_seconds=60, memory_bytes=1024 * 2**20, per_org=1)
    try:
        await pool.warm()
        for _ in range(20):  # warm both paths
            compile_request(one)
            await pool.compile(org, one)

        async def inline_one() -> None:
            compile_request(one)

        async def pooled_one() -> None:
            await pool.compile(org, one)

        inline = [await timed(inline_one) for _ in range(args.compiles)]
        pooled = [await timed(pooled_one) for _ in range(args.compiles)]

        async def heavy_inline() -> None:
            compile_request(heavy)

        async def heavy_thread() -> None:
            await asyncio.to_thread(compile_request, heavy)

        async def heavy_pool() -> None:
            await pool.compile(org, heavy)

        lag = {
            name: await loop_lag_during(action)
            for name, action in (("event loop", heavy_inline), ("thread", heavy_thread), ("pool", heavy_pool))
        }
    finally:
        pool.close()
    result = {
        "one_job_inline_ms_median": round(statistics.median(inline), 2),
        "one_job_pool_ms_median": round(statistics.median(pooled), 2),
        "pool_overhead_ms_median": round(statistics.median(pooled) - statistics.median(inline), 2),
        "one_job_pool_ms_p99": round(sorted(pooled)[int(0.99 * (len(pooled) - 1))], 2),
        "heavy_1000_jobs": {
            name: {"compile_ms": round(elapsed, 1), "loop_lag_ms_max": round(worst, 1)}
            for name, (elapsed, worst) in lag.items()
        },
    }
    print(json.dumps(result, indent=2))
    ok = result["pool_overhead_ms_median"] < 5 and lag["pool"][1] < 50
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compiles", type=int, default=200)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
