"""Benchmark of the Insights operations on a large project (issue 17; figures in docs/performance.md).

    python bench/insights.py [--workflows 100000] [--jobs-per-workflow 10] [--tests-per-job 5]
                             [--database-url postgresql://...] [--requests 30]

1. a fresh database (a temporary SQLite file, or the PostgreSQL database named, which must be empty)
   migrated by the app; one organization, user and project;
2. the fixture loader writes the rows the engine would write: workflow runs spread over 90 days on
   five branches and three workflow names (statuses 80 % success, 15 % failed, 5 % canceled), each
   with its jobs (two resource classes) and each job with its test results (a few tests flaky);
3. every Insights operation called ``--requests`` times through the real app in-process (httpx's ASGI
   transport: the HTTP stack without a socket), with its latency p50 and p99;
4. on SQLite, the file's growth from the indexes the Insights migration adds (size with them over
   size without them, after ``VACUUM``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from circlet.app import create_app  # noqa: E402
from circlet.db.models import Job, Pipeline, Project, TestResult, Workflow  # noqa: E402
from circlet.settings import Limits, Settings  # noqa: E402
from circlet.users import service as accounts  # noqa: E402

NOW = datetime.now(UTC)
BRANCHES = ("main", "main", "main", "dev", "feature")
WORKFLOWS = ("build", "test", "deploy")
BATCH = 20_000
INDEXES = ("ix_workflows_project_created", "ix_workflows_project_name_created", "ix_jobs_project_started")


async def load(database: object, project_id: uuid.UUID, args: argparse.Namespace) -> None:
    """Writes rows in batches of plain INSERTs, as the engine's would be, in chronological order."""
    rng = random.Random(17)
    pipelines: list[dict[str, object]] = []
    workflows: list[dict[str, object]] = []
    jobs: list[dict[str, object]] = []
    tests: list[dict[str, object]] = []
    job_number = 0

    async def flush(final: bool = False) -> None:
        if not final and len(tests) < BATCH and len(jobs) < BATCH:
            return
        async with database.writing() as session:  # type: ignore[attr-defined]
            for table, rows in ((Pipeline, pipelines), (Workflow, workflows), (Job, jobs), (TestResult, tests)):
                if rows:
                    await session.execute(insert(table.__table__), rows)
        for rows in (pipelines, workflows, jobs, tests):
            rows.clear()

    span = timedelta(days=args.days).total_seconds()
    for index in range(args.workflows):
        created = NOW - timedelta(seconds=span * (1 - index / args.workflows))
        pipeline_id, workflow_id = uuid.uuid4(), uuid.uuid4()
        roll = rng.random()
        status = "success" if roll < 0.8 else "failed" if roll < 0.95 else "canceled"
        seconds = rng.randint(60, 1800)
        revision = f"{index // 2:040x}"  # two runs per commit: reruns, where flakes show
        pipelines.append(
            {
                "id": pipeline_id,
                "project_id": project_id,
                "number": index + 1,
                "state": "created",
                "branch": rng.choice(BRANCHES),
                "revision": revision,
                "created_at": created,
                "updated_at": created,
                "errors": [],
                "parameters": {},
                "values": {},
            }
        )
        workflows.append(
            {
                "id": workflow_id,
                "pipeline_id": pipeline_id,
                "project_id": project_id,
                "name": WORKFLOWS[index % len(WORKFLOWS)],
                "status": status,
                "created_at": created,
                "stopped_at": created + timedelta(seconds=seconds),
                "auto_rerun_number": 0,
            }
        )
        for j in range(args.jobs_per_workflow):
            job_id = uuid.uuid4()
            job_number += 1
            job_seconds = rng.randint(10, seconds)
            job_status = status if j == args.jobs_per_workflow - 1 else "success"
            jobs.append(
                {
                    "id": job_id,
                    "workflow_id": workflow_id,
                    "pipeline_id": pipeline_id,
                    "project_id": project_id,
                    "name": f"job-{j}",
                    "type": "build",
                    "number": job_number,
                    "status": job_status,
                    "requires": {},
                    "contexts": [],
                    "spec": {},
                    "parallelism": 1 + j % 2,
                    "resource_class": "medium" if j % 2 else "large",
                    "executor_type": "docker",
                    "created_at": created,
                    "queued_at": created,
                    "started_at": created,
                    "stopped_at": created + timedelta(seconds=job_seconds),
                }
            )
            for t in range(args.tests_per_job):
                flaky = t == 0 and index % 50 < 2
                result = "failure" if (flaky and index % 2) or (job_status == "failed" and t == 1) else "success"
                tests.append(
                    {
                        "job_id": job_id,
                        "project_id": project_id,
                        "source": "junit",
                        "run_time": rng.random() * 5,
                        "file": f"tests/test_{j}.py",
                        "result": result,
                        "name": f"test_{t}",
                        "classname": f"tests.test_{j}",
                        "created_at": created + timedelta(seconds=job_seconds),
                    }
                )
        await flush()
    await flush(final=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--jobs-per-workflow", type=int, default=10)
    parser.add_argument("--tests-per-job", type=int, default=5)
    parser.add_argument("--days", type=int, default=90, help="the span the runs are spread over")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--export-only", action="store_true", help="time only the usage export")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="circlet-bench-insights-"))
    settings = Settings(
        home=home,
        database_url=args.database_url or f"sqlite:///{home}/circlet.db",
        rate_limit_per_minute=0,
        insights_credits_per_minute="medium=10,large=20",
        limits=Limits(),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        database = app.state.database
        async with database.writing() as session:
            organization = await accounts.ensure_org(session, "gh/bench")
            user = await accounts.ensure_user(session, "bencher")
            await accounts.add_member(session, organization, user, "admin")
            token = (await accounts.mint_token(session, user)).token
            project = Project(org_id=organization.id, name="app", name_key="app", default_branch="main")
            session.add(project)
            await session.flush()
            project_id = project.id
        started = time.perf_counter()
        await load(database, project_id, args)
        jobs = args.workflows * args.jobs_per_workflow
        print(
            f"loaded {args.workflows:,} workflow runs, {jobs:,} job runs, {jobs * args.tests_per_job:,} test results"
            f" in {time.perf_counter() - started:.0f} s"
        )
        async with database.writing() as session:
            await session.execute(text("ANALYZE"))
        slug = "gh/bench/app"
        operations = {
            "getProjectWorkflowMetrics": f"/insights/{slug}/workflows",
            "getProjectWorkflowMetrics all-branches": f"/insights/{slug}/workflows?all-branches=true",
            "getProjectWorkflowRuns": f"/insights/{slug}/workflows/build",
            "getProjectWorkflowJobMetrics": f"/insights/{slug}/workflows/build/jobs",
            "getWorkflowSummary": f"/insights/{slug}/workflows/build/summary",
            "getProjectWorkflowTestMetrics": f"/insights/{slug}/workflows/build/test-metrics",
            "getJobTimeseries": f"/insights/time-series/{slug}/workflows/build/jobs",
            "getOrgSummaryData": "/insights/gh/bench/summary",
            "getAllInsightsBranches": f"/insights/{slug}/branches",
            "getFlakyTests": f"/insights/{slug}/flaky-tests",
            "getProjectWorkflowsPageData": f"/insights/pages/{slug}/summary",
        }
        transport = httpx.ASGITransport(app=app)
        headers = {"Circle-Token": token}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as http:
            print(f"{'operation':42} {'p50 ms':>8} {'p99 ms':>8}")
            for name, path in operations.items() if not args.export_only else ():
                times = []
                for _ in range(args.requests):
                    begun = time.perf_counter()
                    response = await http.get("/api/v2" + path)
                    times.append((time.perf_counter() - begun) * 1000)
                    assert response.status_code == 200, response.text
                times.sort()
                p99 = times[min(len(times) - 1, round(0.99 * len(times)))]
                print(f"{name:42} {statistics.median(times):8.1f} {p99:8.1f}")
            await usage_export(http, app)
    if not args.database_url:
        await index_growth(home / "circlet.db")


async def usage_export(http: httpx.AsyncClient, app: object) -> None:
    """A usage export of the last 31 days: time to completion, rows, and the process's peak RSS above
    where it started (sampled every 10 ms)."""
    import psutil

    process = psutil.Process()
    org_id = (await http.get("/api/v2/me/collaborations")).json()[0]["id"]
    body = {"start": (NOW - timedelta(days=31)).isoformat(), "end": NOW.isoformat()}
    baseline = process.memory_info().rss
    peak = baseline
    begun = time.perf_counter()
    created = (await http.post(f"/api/v2/organizations/{org_id}/usage_export_job", json=body)).json()
    while True:
        peak = max(peak, process.memory_info().rss)
        state = (
            await http.get(f"/api/v2/organizations/{org_id}/usage_export_job/{created['usage_export_job_id']}")
        ).json()
        if state["state"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - begun
    async with app.state.database.reading() as session:  # type: ignore[attr-defined]
        rows = (await session.execute(text("SELECT rows FROM usage_exports"))).scalar_one()
    print(
        f"usage export: {state['state']}, {rows:,} job runs in {seconds:.1f} s, "
        f"peak RSS +{(peak - baseline) / 2**20:.0f} MiB (process {peak / 2**20:.0f} MiB)"
    )


async def index_growth(path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("VACUUM")
    with_indexes = path.stat().st_size
    for name in INDEXES:
        connection.execute(f"DROP INDEX {name}")
    connection.execute("VACUUM")
    without = path.stat().st_size
    connection.close()
    print(
        f"database {with_indexes / 2**20:.0f} MiB, {100 * (with_indexes / without - 1):.1f} % for the Insights indexes"
    )


if __name__ == "__main__":
    asyncio.run(main())
