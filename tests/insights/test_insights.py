"""The Insights figures against values computed by hand from runs with known times and statuses.

The runs of workflow ``build`` (each with one job ``test``, resource class ``medium`` at 10 credits a
minute, parallelism 2, running the workflow's whole time, so a run of d seconds costs d/3 credits):

| when (before NOW) | branch | status   | seconds |
| ----------------- | ------ | -------- | ------- |
| 100 days          | main   | success  | 500     |  (the window before the 90 days)
| 10 days           | main   | success  | 1000    |
| 6 days            | main   | success  | 100     |
| 5 days            | main   | failed   | 50      |
| 5 days − 1 hour   | main   | failed   | 60      |
| 4 days | main | success | 200 | recovers 86400 − 50 + 200 = 86550 s after the first failure stopped
| 3 days            | main   | canceled | 10      |
| 2 days            | main   | success  | 300     |
| 1 day             | main   | running  | —       |
| 1 day             | dev    | failed   | 40      |
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from circlet.db.engine import Database
from circlet.settings import Settings
from tests.conftest import Account, make_account
from tests.insights.seed import Seeder, add_project

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"insights_credits_per_minute": "medium=10, large=20"})


@pytest.fixture
async def seeded(client: httpx.AsyncClient, database: Database) -> tuple[Account, str]:
    account = await make_account(database)
    client.app.state.insights_service.clock = lambda: NOW  # type: ignore[attr-defined]
    async with database.writing() as session:
        project = await add_project(session, account.org_id)
        seed = Seeder(session, project.id)
        await seed.run("build", "success", ago(100), 500)
        await seed.run("build", "success", ago(10), 1000)
        await seed.run("build", "success", ago(6), 100, revision="c" * 40, tests=_tests("success", "failure"))
        await seed.run("build", "failed", ago(5), 50, revision="c" * 40, tests=_tests("failure", "failure"))
        await seed.run("build", "failed", ago(5, -1), 60)
        await seed.run("build", "success", ago(4), 200, jobs={"test": "success", "hold": "approval"})
        await seed.run("build", "canceled", ago(3), 10)
        await seed.run("build", "success", ago(2), 300)
        await seed.run("build", "running", ago(1), None)
        await seed.run("build", "failed", ago(1), 40, branch="dev")
        await seed.run("deploy", "success", ago(1), 30)
    return account, f"{account.org_slug}/app"


def _tests(first: str, second: str) -> dict[str, list[tuple[str, str, float]]]:
    return {"test": [("app.models.test_save", first, 1.5), ("app.models.test_load", second, 0.25)]}


async def get(client: httpx.AsyncClient, account: Account, path: str, **params: Any) -> Any:
    response = await client.get(f"/api/v2/insights/{path}", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_workflow_metrics_of_the_default_branch_last_seven_days(
    client: httpx.AsyncClient, seeded: tuple[Account, str]
) -> None:
    account, slug = seeded
    body = await get(client, account, f"{slug}/workflows", **{"reporting-window": "last-7-days"})
    assert [item["name"] for item in body["items"]] == ["build", "deploy"]
    build = body["items"][0]
    assert build["metrics"] == {
        "total_runs": 7,
        "successful_runs": 3,
        "mttr": 86550,
        "total_credits_used": 240,  # (100 + 50 + 60 + 200 + 10 + 300) / 3
        "failed_runs": 2,
        "success_rate": 0.6,
        "duration_metrics": {
            "min": 100,
            "mean": 200,
            "median": 200,
            "p95": 300,
            "max": 300,
            "standard_deviation": pytest.approx(math.sqrt(20000 / 3)),
        },
        "total_recoveries": 1,
        "throughput": 1.0,
    }
    assert build["window_start"] == "2026-11-25T12:00:00.000Z"
    assert build["window_end"] == "2026-11-30T12:00:00.000Z"
    assert build["project_id"] and body["next_page_token"] is None


async def test_all_branches_and_one_branch(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    every = await get(
        client, account, f"{slug}/workflows", **{"reporting-window": "last-7-days", "all-branches": "true"}
    )
    build = every["items"][0]["metrics"]
    assert (build["total_runs"], build["failed_runs"], build["success_rate"]) == (8, 3, 0.5)
    assert build["total_credits_used"] == 253  # 760 / 3
    dev = await get(client, account, f"{slug}/workflows", branch="dev", **{"reporting-window": "last-7-days"})
    assert [(i["name"], i["metrics"]["total_runs"], i["metrics"]["mttr"]) for i in dev["items"]] == [("build", 1, 0)]
    day = await get(client, account, f"{slug}/workflows", **{"reporting-window": "last-24-hours"})
    assert [(i["name"], i["metrics"]["total_runs"], i["metrics"]["throughput"]) for i in day["items"]] == [
        ("build", 1, 1.0),
        ("deploy", 1, 1.0),
    ]


async def test_workflow_summary_and_trends(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    body = await get(client, account, f"{slug}/workflows/build/summary")
    metrics = body["metrics"]
    assert metrics["total_runs"] == 8
    assert (metrics["successful_runs"], metrics["failed_runs"], metrics["completed_runs"]) == (4, 2, 7)
    assert metrics["success_rate"] == pytest.approx(4 / 6)
    assert metrics["duration_metrics"] == {
        "min": 100,
        "mean": 400,
        "median": 250,
        "p95": 1000,
        "max": 1000,
        "standard_deviation": pytest.approx(math.sqrt((300**2 + 200**2 + 100**2 + 600**2) / 4)),
    }
    assert metrics["mttr"] == 86550 and metrics["total_credits_used"] == 573  # 1720 / 3
    assert metrics["throughput"] == pytest.approx(8 / 90)
    assert body["trends"] == {
        "total_runs": 8.0,
        "failed_runs": -1.0,
        "success_rate": pytest.approx(4 / 6),
        "p95_duration_secs": 2.0,
        "median_duration_secs": 0.5,
        "total_credits_used": pytest.approx(1720 / 500),
        "mttr": -1.0,
        "throughput": 8.0,
    }
    assert body["workflow_names"] == ["build", "deploy"]


async def test_workflow_runs_newest_first_with_credits_and_pages(
    client: httpx.AsyncClient, seeded: tuple[Account, str]
) -> None:
    account, slug = seeded
    body = await get(client, account, f"{slug}/workflows/build")
    runs = [(r["status"], r["duration"], r["credits_used"], r["is_approval"]) for r in body["items"]]
    assert runs == [
        ("success", 300, 100, False),
        ("canceled", 10, 3, False),
        ("success", 200, 67, True),
        ("failed", 60, 20, False),
        ("failed", 50, 17, False),
        ("success", 100, 33, False),
        ("success", 1000, 333, False),
    ]
    first = body["items"][0]
    assert first["branch"] == "main" and first["created_at"] == "2026-11-29T12:00:00.000Z"
    assert first["stopped_at"] == "2026-11-29T12:05:00.000Z"
    dated = await get(
        client,
        account,
        f"{slug}/workflows/build",
        **{"start-date": "2026-11-25T00:00:00Z", "end-date": "2026-11-27T00:00:00Z"},
    )
    assert [r["duration"] for r in dated["items"]] == [60, 50, 100]


async def test_job_metrics(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    body = await get(client, account, f"{slug}/workflows/build/jobs", **{"reporting-window": "last-7-days"})
    assert [item["name"] for item in body["items"]] == ["test"]  # approvals are not job runs
    metrics = body["items"][0]["metrics"]
    assert metrics == {
        "total_runs": 7,
        "failed_runs": 2,
        "successful_runs": 3,
        "duration_metrics": {
            "min": 100,
            "mean": 200,
            "median": 200,
            "p95": 300,
            "max": 300,
            "standard_deviation": pytest.approx(math.sqrt(20000 / 3)),
        },
        "success_rate": 0.6,
        "total_credits_used": 240,
        "throughput": 1.0,
    }
    none = await get(client, account, f"{slug}/workflows/build/jobs", **{"job-name": "lint"})
    assert none["items"] == []
    some = await get(client, account, f"{slug}/workflows/build/jobs", **{"job-name": "es"})
    assert [item["name"] for item in some["items"]] == ["test"]


async def test_job_timeseries_daily_and_hourly(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    body = await get(client, account, f"time-series/{slug}/workflows/build/jobs")
    by_day = {item["timestamp"]: item for item in body["items"]}
    assert sorted(by_day) == [
        "2026-11-21T00:00:00.000Z",
        "2026-11-25T00:00:00.000Z",
        "2026-11-26T00:00:00.000Z",
        "2026-11-27T00:00:00.000Z",
        "2026-11-28T00:00:00.000Z",
        "2026-11-29T00:00:00.000Z",
        "2026-11-30T00:00:00.000Z",
    ]
    two_failures = by_day["2026-11-26T00:00:00.000Z"]
    assert two_failures["name"] == "test"
    assert two_failures["min_started_at"] == "2026-11-26T12:00:00.000Z"
    assert two_failures["max_ended_at"] == "2026-11-26T13:01:00.000Z"
    assert two_failures["metrics"] == {
        "total_runs": 2,
        "failed_runs": 2,
        "successful_runs": 0,
        "throughput": 2.0,
        "median_credits_used": 18,  # (50/3 + 60/3) / 2
        "total_credits_used": 37,
        "duration_metrics": {"min": 0, "median": 0, "max": 0, "p95": 0, "total": 0},
    }
    success = by_day["2026-11-27T00:00:00.000Z"]["metrics"]
    assert success["duration_metrics"] == {"min": 200, "median": 200, "max": 200, "p95": 200, "total": 200}
    hourly = await get(client, account, f"time-series/{slug}/workflows/build/jobs", granularity="hourly")
    assert [(i["timestamp"], i["metrics"]["total_runs"], i["metrics"]["throughput"]) for i in hourly["items"]] == [
        ("2026-11-29T12:00:00.000Z", 1, 24.0),  # started exactly 48 hours before: included
        ("2026-11-30T12:00:00.000Z", 1, 24.0),
    ]


async def test_org_summary_and_project_page(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    org = await get(client, account, f"{account.org_slug}/summary", **{"reporting-window": "last-7-days"})
    assert org["all_projects"] == ["app"]
    assert org["org_data"]["metrics"] == {
        "total_runs": 9,
        "total_duration_secs": 790,  # 720 + 40 + 30
        "total_credits_used": 263,
        "success_rate": pytest.approx(4 / 7),
        "throughput": pytest.approx(9 / 7),
    }
    # the 7 days before: the success of 10 days ago, 1000 s
    assert org["org_data"]["trends"]["total_runs"] == 9.0
    assert org["org_data"]["trends"]["total_duration_secs"] == pytest.approx(0.79)
    assert org["org_project_data"][0]["project_name"] == "app"
    none = await get(client, account, f"{account.org_slug}/summary", **{"project-names": "other"})
    assert none["org_project_data"] == [] and none["org_data"]["metrics"]["total_runs"] == 0

    page = await get(
        client, account, f"pages/{slug}/summary", **{"reporting-window": "last-7-days", "workflow-names": "build"}
    )
    assert page["project_data"]["metrics"]["total_runs"] == 9
    assert [w["workflow_name"] for w in page["project_workflow_data"]] == ["build"]
    assert page["project_workflow_data"][0]["metrics"] == {
        "total_credits_used": 253,
        "p95_duration_secs": 300.0,
        "total_runs": 8,
        "success_rate": 0.5,
    }
    assert [
        (b["workflow_name"], b["branch"], b["metrics"]["total_runs"]) for b in page["project_workflow_branch_data"]
    ] == [
        ("build", "dev", 1),
        ("build", "main", 7),
    ]
    assert page["all_branches"] == ["dev", "main"] and page["all_workflows"] == ["build", "deploy"]
    branches = await get(client, account, f"{slug}/branches", **{"workflow-name": "deploy"})
    assert branches["branches"] == ["main"]


async def test_flaky_tests_and_test_metrics(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    flaky = await get(client, account, f"{slug}/flaky-tests")
    assert flaky["total-flaky-tests"] == 1
    [test] = flaky["flaky-tests"]
    assert test["test-name"] == "test_save" and test["classname"] == "app.models"
    assert test["file"] == "app/models.py" and test["source"] == "junit" and test["job-name"] == "test"
    assert test["times-flaked"] == 1 and test["time-wasted"] == 50
    assert test["workflow-name"] == "build" and test["pipeline-number"] == 4
    assert test["workflow-created-at"] == "2026-11-26T12:00:00.000Z"
    # CircleCI's own spelling, which its clients parse (the MCP server's find_flaky_tests among them)
    assert flaky["total_flaky_tests"] == 1 and flaky["flaky_tests_count"] == 1
    assert flaky["flaky_tests"] == [{key.replace("-", "_"): value for key, value in test.items()}]

    metrics = await get(client, account, f"{slug}/workflows/build/test-metrics")
    assert metrics["total_test_runs"] == 4
    assert metrics["average_test_count"] == 2  # 4 results over the 2 runs that had tests
    assert [(t["test_name"], t["failed_runs"], t["total_runs"], t["flaky"]) for t in metrics["most_failed_tests"]] == [
        ("test_load", 2, 2, False),
        ("test_save", 1, 2, True),
    ]
    assert [(t["test_name"], t["p95_duration"]) for t in metrics["slowest_tests"]] == [
        ("test_save", 1.5),
        ("test_load", 0.25),
    ]
    by_pipeline = {run["pipeline_number"]: run for run in metrics["test_runs"]}
    assert by_pipeline[4]["test_counts"] == {"error": 0, "failure": 2, "skipped": 0, "success": 0, "total": 2}
    assert sorted(by_pipeline) == [3, 4]
    assert by_pipeline[4]["success_rate"] == 0.0 and by_pipeline[3]["success_rate"] == 0.5


async def test_refusals(client: httpx.AsyncClient, database: Database, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    outsider = await make_account(database)
    for path in (
        f"{slug}/workflows",
        f"{slug}/flaky-tests",
        f"{slug}/branches",
        f"{slug}/workflows/build/summary",
        f"time-series/{slug}/workflows/build/jobs",
        f"pages/{slug}/summary",
        f"{account.org_slug}/summary",
    ):
        response = await client.get(f"/api/v2/insights/{path}", headers=outsider.headers)
        assert response.status_code == 404, path
        assert "message" in response.json()
    assert (await client.get(f"/api/v2/insights/{slug}/workflows")).status_code == 401
    bad = [
        (f"{slug}/workflows", {"reporting-window": "last-year"}),
        (f"{slug}/workflows", {"branch": "main", "all-branches": "true"}),
        (f"{slug}/workflows/build", {"end-date": "2026-11-01T00:00:00Z"}),
        (f"{slug}/workflows/build", {"start-date": "2026-01-01T00:00:00Z", "end-date": "2026-11-01T00:00:00Z"}),
        (f"{slug}/workflows/build", {"start-date": "2026-11-02T00:00:00Z", "end-date": "2026-11-01T00:00:00Z"}),
        (f"{slug}/workflows/build", {"page-token": "nonsense"}),
        (f"time-series/{slug}/workflows/build/jobs", {"granularity": "weekly"}),
    ]
    for path, params in bad:
        response = await client.get(f"/api/v2/insights/{path}", params=params, headers=account.headers)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["message"]


async def test_a_workflow_without_runs_has_zero_figures(client: httpx.AsyncClient, seeded: tuple[Account, str]) -> None:
    account, slug = seeded
    body = await get(client, account, f"{slug}/workflows/nothing/summary")
    assert body["metrics"]["total_runs"] == 0 and body["metrics"]["duration_metrics"]["p95"] == 0
    assert body["metrics"]["window_start"] == "2026-09-02T12:00:00.000Z"
    assert body["trends"]["total_runs"] == 1.0
    page = await get(client, account, f"pages/{slug}/summary", branches="nowhere")
    assert page["project_workflow_branch_data"] == []
