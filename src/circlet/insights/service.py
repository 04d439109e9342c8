"""The figures of the Insights tag, as CircleCI defines them (docs/compatibility.md, "Insights").

- A run's outcome: ``success``; a failure is ``failed``, ``error`` or ``unauthorized`` (jobs: also
  ``timedout`` and ``infrastructure_fail``); ``canceled`` is neither; runs still running or on hold
  count only in ``total_runs``.
- ``success_rate`` = successful / (successful + failed), a ratio 0–1 (CircleCI: successful / (all −
  cancelled)); 0 when nothing finished.
- ``throughput`` = runs per day of the window (a 24-hour window is one day).
- ``duration_metrics`` are over successful runs, in seconds (rounded half up); ``standard_deviation`` is
  the population's.
- ``mttr`` = mean seconds from the stop of the first failure of a streak (same workflow, same branch) to
  the stop of the success that ends it; ``total_recoveries`` counts those successes.
- Credits: a job's compute minutes × parallelism × the operator's rate for its resource class
  (``CIRCLET_INSIGHTS_CREDITS_PER_MINUTE``), 0 without a rate; a workflow's are its jobs'.
- Trends: the figure over the window divided by the same figure over the window of the same length
  before it; 1.0 when both are 0, −1.0 when only the earlier one is (an infinite rise).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import Principal
from circlet.db.types import utcnow
from circlet.http.errors import BadRequest
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.insights import repository as insights
from circlet.insights.repository import RunScope, RunStats
from circlet.orgs.service import find_org
from circlet.projects.repository import ProjectRef
from circlet.projects.service import ProjectService

REPORTING_WINDOWS = {
    "last-24-hours": timedelta(hours=24),
    "last-7-days": timedelta(days=7),
    "last-30-days": timedelta(days=30),
    "last-60-days": timedelta(days=60),
    "last-90-days": timedelta(days=90),
}
DEFAULT_WINDOW = "last-90-days"
RETENTION = timedelta(days=90)
HOURLY_RETENTION = timedelta(hours=48)
FLAKY_FOR = timedelta(days=14)
RUNS_PAGE_SIZE = 250
BRANCH_LIMIT = 5000
RECENT_RUNS_FOR_TESTS = 10
TOP_TESTS = 10


def whole(seconds: float) -> int:
    """Seconds as the API's integers: rounded half up."""
    return int(math.floor(seconds + 0.5))


def success_rate(stats: RunStats) -> float:
    finished = stats.successful_runs + stats.failed_runs
    return stats.successful_runs / finished if finished else 0.0


def mttr(stats: RunStats) -> int:
    return whole(stats.recovery_seconds / stats.recoveries) if stats.recoveries else 0


def duration_metrics(stats: RunStats) -> dict[str, Any]:
    if not stats.timed_runs:
        return {"min": 0, "mean": 0, "median": 0, "p95": 0, "max": 0, "standard_deviation": 0.0}
    mean = stats.sum_duration / stats.timed_runs
    variance = max(stats.sum_squares / stats.timed_runs - mean * mean, 0.0)
    return {
        "min": whole(stats.min_duration),
        "mean": whole(mean),
        "median": whole(stats.median_duration),
        "p95": whole(stats.p95_duration),
        "max": whole(stats.max_duration),
        "standard_deviation": math.sqrt(variance),
    }


def trend(current: float, prior: float) -> float:
    if prior:
        return current / prior
    return 1.0 if not current else -1.0


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def days(self) -> float:
        return (self.until - self.since) / timedelta(days=1)

    def before(self) -> Window:
        return Window(self.since - (self.until - self.since), self.since)


@dataclass
class InsightsService:
    project_service: ProjectService
    page_tokens: PageTokens
    rates: Mapping[str, float] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow

    # -- parameters ------------------------------------------------------------------------------

    def window(self, name: str | None) -> Window:
        length = REPORTING_WINDOWS.get(name or DEFAULT_WINDOW)
        if length is None:
            raise BadRequest(f"reporting-window must be one of {', '.join(REPORTING_WINDOWS)}.")
        now = self.clock()
        return Window(now - length, now)

    @staticmethod
    def branch(found: ProjectRef, branch: str | None, all_branches: bool | None) -> str | None:
        """``branch``, or every branch with ``all-branches=true``, else the project's default branch."""
        if all_branches and branch is not None:
            raise BadRequest("Use either branch or all-branches, not both.")
        if all_branches:
            return None
        return branch if branch is not None else found.project.default_branch

    async def _project(self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]) -> ProjectRef:
        return await self.project_service.find_to_read(session, principal, slug)

    async def _stats(
        self,
        session: AsyncSession,
        scope: RunScope,
        keys: Sequence[str],
        *,
        recoveries: bool = False,
    ) -> dict[insights.Key, RunStats]:
        stats = await insights.run_stats(session, insights.workflow_runs(scope), keys, recoveries=recoveries)
        for key, credits in (await insights.workflow_credits(session, scope, self.rates, keys)).items():
            if key in stats:
                stats[key].credits = credits
        return stats

    # -- workflows -------------------------------------------------------------------------------

    def _workflow_metrics(self, stats: RunStats, days: float) -> dict[str, Any]:
        return {
            "total_runs": stats.total_runs,
            "successful_runs": stats.successful_runs,
            "mttr": mttr(stats),
            "total_credits_used": whole(stats.credits),
            "failed_runs": stats.failed_runs,
            "success_rate": success_rate(stats),
            "duration_metrics": duration_metrics(stats),
            "total_recoveries": stats.recoveries,
            "throughput": stats.total_runs / days,
        }

    async def workflow_metrics(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        branch: str | None,
        all_branches: bool | None,
        reporting_window: str | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        window = self.window(reporting_window)
        scope = RunScope([found.project.id], window.since, window.until, self.branch(found, branch, all_branches))
        stats = await self._stats(session, scope, ["name"], recoveries=True)
        items = [
            {
                "name": name,
                "metrics": self._workflow_metrics(figures, window.days),
                "window_start": _time(figures.window_start, window.since),
                "window_end": _time(figures.window_end, window.until),
                "project_id": found.project.id,
            }
            for (name,), figures in sorted(stats.items())
        ]
        return {"items": items, "next_page_token": None}

    async def workflow_runs(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        workflow_name: str,
        branch: str | None,
        all_branches: bool | None,
        start_date: datetime | None,
        end_date: datetime | None,
        page_token: str | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        window = self._dates(start_date, end_date, RETENTION)
        scope = RunScope(
            [found.project.id], window.since, window.until, self.branch(found, branch, all_branches), [workflow_name]
        )
        token_scope = f"insights-runs:{found.project.id}:{workflow_name}"
        after = None
        if page_token:
            position = self.page_tokens.decode(page_token, token_scope)
            try:
                after = (datetime.fromisoformat(position[0]), uuid.UUID(position[1]))
            except (ValueError, TypeError, IndexError):
                raise BadRequest("page-token is invalid.") from None
        runs = await insights.list_workflow_runs(session, scope, after, RUNS_PAGE_SIZE + 1)
        page = runs[:RUNS_PAGE_SIZE]
        credits = await insights.credits_of_workflows(session, [run.id for run in page], self.rates)
        next_token = None
        if len(runs) > RUNS_PAGE_SIZE:
            last = page[-1]
            next_token = self.page_tokens.encode(token_scope, [last.created_at.isoformat(), str(last.id)])
        items = [
            {
                "id": run.id,
                "branch": run.branch,
                "duration": whole(run.duration),
                "created_at": timestamp(run.created_at),
                "stopped_at": timestamp(run.stopped_at),
                "credits_used": whole(credits.get(run.id, 0.0)),
                "status": run.status,
                "is_approval": run.is_approval,
            }
            for run in page
        ]
        return {"items": items, "next_page_token": next_token}

    def _dates(self, start: datetime | None, end: datetime | None, retention: timedelta) -> Window:
        """``start-date``/``end-date``: end needs start, at most 90 days after it; default the retention."""
        now = self.clock()
        if end is not None and start is None:
            raise BadRequest("start-date must be specified if an end-date is provided.")
        start = _aware(start) if start is not None else now - retention
        end = _aware(end) if end is not None else max(now, start)
        if end < start:
            raise BadRequest("end-date must not be before start-date.")
        if end - start > RETENTION:
            raise BadRequest("end-date can be at most 90 days after start-date.")
        return Window(start, end)

    async def job_metrics(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        workflow_name: str,
        branch: str | None,
        all_branches: bool | None,
        reporting_window: str | None,
        job_name: str | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        window = self.window(reporting_window)
        scope = RunScope(
            [found.project.id], window.since, window.until, self.branch(found, branch, all_branches), [workflow_name]
        )
        runs = insights.job_runs(scope, self.rates, job_name=job_name)
        stats = await insights.run_stats(session, runs, ["name"], credits=True)
        items = [
            {
                "name": name,
                "metrics": {
                    "total_runs": figures.total_runs,
                    "failed_runs": figures.failed_runs,
                    "successful_runs": figures.successful_runs,
                    "duration_metrics": duration_metrics(figures),
                    "success_rate": success_rate(figures),
                    "total_credits_used": whole(figures.credits),
                    "throughput": figures.total_runs / window.days,
                },
                "window_start": _time(figures.window_start, window.since),
                "window_end": _time(figures.window_end, window.until),
            }
            for (name,), figures in sorted(stats.items())
        ]
        return {"items": items, "next_page_token": None}

    async def workflow_summary(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        workflow_name: str,
        branch: str | None,
        all_branches: bool | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        window = self.window(DEFAULT_WINDOW)
        chosen = self.branch(found, branch, all_branches)
        current, prior = [
            (
                await self._stats(
                    session,
                    RunScope([found.project.id], w.since, w.until, chosen, [workflow_name]),
                    [],
                    recoveries=True,
                )
            ).get((), RunStats())
            for w in (window, window.before())
        ]
        metrics = self._workflow_metrics(current, window.days)
        metrics.pop("total_recoveries")
        metrics["completed_runs"] = current.completed_runs
        metrics["window_start"] = _time(current.window_start, window.since)
        metrics["window_end"] = _time(current.window_end, window.until)
        trends = {
            "total_runs": trend(current.total_runs, prior.total_runs),
            "failed_runs": trend(current.failed_runs, prior.failed_runs),
            "success_rate": trend(success_rate(current), success_rate(prior)),
            "p95_duration_secs": trend(current.p95_duration, prior.p95_duration),
            "median_duration_secs": trend(current.median_duration, prior.median_duration),
            "total_credits_used": trend(current.credits, prior.credits),
            "mttr": trend(mttr(current), mttr(prior)),
            "throughput": trend(current.total_runs, prior.total_runs),
        }
        names = await insights.workflow_names(session, found.project.id, self.clock() - RETENTION)
        return {"metrics": metrics, "trends": trends, "workflow_names": names}

    async def job_timeseries(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        workflow_name: str,
        branch: str | None,
        granularity: str | None,
        start_date: datetime | None,
        end_date: datetime | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        granularity = granularity or "daily"
        if granularity not in ("daily", "hourly"):
            raise BadRequest("granularity must be daily or hourly.")
        window = self._dates(start_date, end_date, HOURLY_RETENTION if granularity == "hourly" else RETENTION)
        scope = RunScope(
            [found.project.id], window.since, window.until, self.branch(found, branch, None), [workflow_name]
        )
        runs = insights.job_runs(scope, self.rates, bucket=granularity)
        stats = await insights.run_stats(session, runs, ["name", "bucket"], credits=True)
        per_day = 24.0 if granularity == "hourly" else 1.0
        items = [
            {
                "name": name,
                "min_started_at": _time(figures.window_start, window.since),
                "max_ended_at": _time(figures.last_stop or figures.window_end, window.until),
                "timestamp": timestamp(datetime.fromisoformat(bucket)),
                "metrics": {
                    "total_runs": figures.total_runs,
                    "failed_runs": figures.failed_runs,
                    "successful_runs": figures.successful_runs,
                    "throughput": figures.total_runs * per_day,
                    "median_credits_used": whole(figures.median_credits),
                    "total_credits_used": whole(figures.credits),
                    "duration_metrics": {
                        "min": whole(figures.min_duration),
                        "median": whole(figures.median_duration),
                        "max": whole(figures.max_duration),
                        "p95": whole(figures.p95_duration),
                        "total": whole(figures.sum_duration),
                    },
                },
            }
            for (name, bucket), figures in sorted(stats.items())
        ]
        return {"items": items, "next_page_token": None}

    # -- summaries -------------------------------------------------------------------------------

    async def org_summary(
        self,
        session: AsyncSession,
        principal: Principal,
        org_slug: str,
        reporting_window: str | None,
        project_names: Sequence[str],
    ) -> dict[str, Any]:
        org = await find_org(session, principal, org_slug)
        window = self.window(reporting_window)
        projects = await insights.org_projects(session, org.id)
        chosen = [(pid, name) for pid, name in projects if not project_names or name in project_names]
        ids = [pid for pid, _ in chosen]
        now_stats, before_stats = [
            await self._stats(session, RunScope(ids, w.since, w.until), ["project_id"])
            for w in (window, window.before())
        ]
        total_now, total_before = _combined(now_stats.values()), _combined(before_stats.values())
        project_data = []
        for pid, name in chosen:
            now, before = now_stats.get((pid,), RunStats()), before_stats.get((pid,), RunStats())
            project_data.append(
                {
                    "project_name": name,
                    "metrics": {
                        "total_credits_used": whole(now.credits),
                        "total_duration_secs": whole(now.total_duration),
                        "total_runs": now.total_runs,
                        "success_rate": success_rate(now),
                    },
                    "trends": {
                        "total_credits_used": trend(now.credits, before.credits),
                        "total_duration_secs": trend(now.total_duration, before.total_duration),
                        "total_runs": trend(now.total_runs, before.total_runs),
                        "success_rate": trend(success_rate(now), success_rate(before)),
                    },
                }
            )
        return {
            "org_data": _summary_figures(total_now, total_before, window.days),
            "org_project_data": project_data,
            "all_projects": [name for _, name in projects],
        }

    async def project_page(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        reporting_window: str | None,
        branches: Sequence[str],
        workflow_names: Sequence[str],
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        window = self.window(reporting_window)
        project = found.project.id
        names = list(workflow_names) or None
        by_name = [
            await self._stats(session, RunScope([project], w.since, w.until, None, names), ["name"])
            for w in (window, window.before())
        ]
        by_branch = [
            await self._stats(session, RunScope([project], w.since, w.until, None, names), ["name", "branch"])
            for w in (window, window.before())
        ]
        whole_project = [
            (await self._stats(session, RunScope([project], w.since, w.until), [])).get((), RunStats())
            for w in (window, window.before())
        ]
        workflow_data = [
            {"workflow_name": name, **_short_figures(figures, by_name[1].get((name,), RunStats()))}
            for (name,), figures in sorted(by_name[0].items())
        ]
        branch_data = [
            {
                "workflow_name": name,
                "branch": branch,
                **_short_figures(figures, by_branch[1].get((name, branch), RunStats())),
            }
            for (name, branch), figures in sorted(by_branch[0].items())
            if not branches or branch in branches
        ]
        return {
            "org_id": found.org.id,
            "project_id": project,
            "project_data": _summary_figures(whole_project[0], whole_project[1], window.days),
            "project_workflow_data": workflow_data,
            "project_workflow_branch_data": branch_data,
            "all_branches": await insights.branches(session, project, self.clock() - RETENTION, None, BRANCH_LIMIT),
            "all_workflows": await insights.workflow_names(session, project, self.clock() - RETENTION),
        }

    async def branches(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], workflow_name: str | None
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        names = await insights.branches(
            session, found.project.id, self.clock() - RETENTION, workflow_name, BRANCH_LIMIT
        )
        return {"org_id": found.org.id, "project_id": found.project.id, "branches": names}

    # -- tests -----------------------------------------------------------------------------------

    async def flaky_tests(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str]
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        now = self.clock()
        flaky = await insights.flaky_tests(session, found.project.id, now - RETENTION, now - FLAKY_FOR)
        items = [
            {
                "time_wasted": whole(test.time_wasted),
                "workflow_created_at": timestamp(test.workflow_created_at),
                "workflow_id": test.workflow_id,
                "classname": test.classname,
                "pipeline_number": test.pipeline_number,
                "workflow_name": test.workflow_name,
                "test_name": test.test_name,
                "job_name": test.job_name,
                "job_number": test.job_number,
                "times_flaked": test.times_flaked,
                "source": test.source,
                "file": test.file,
            }
            for test in flaky
        ]
        unique = len({(t.classname, t.test_name, t.file, t.source) for t in flaky})
        # CircleCI answers snake_case (what its own clients, the MCP server among them, parse); the spec
        # writes kebab-case: both spellings, so that clients of either work (docs/compatibility.md).
        return {
            "flaky_tests": items,
            "total_flaky_tests": unique,
            "flaky_tests_count": len(items),
            "flaky-tests": [{key.replace("_", "-"): value for key, value in item.items()} for item in items],
            "total-flaky-tests": unique,
        }

    async def test_metrics(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        workflow_name: str,
        branch: str | None,
        all_branches: bool | None,
    ) -> dict[str, Any]:
        found = await self._project(session, principal, slug)
        now = self.clock()
        scope = RunScope(
            [found.project.id], now - RETENTION, now, self.branch(found, branch, all_branches), [workflow_name]
        )
        recent = await insights.recent_workflow_runs(session, scope, RECENT_RUNS_FOR_TESTS)
        ids = [run.workflow_id for run in recent]
        figures = await insights.test_figures(session, ids)
        counts = await insights.test_counts(session, ids)
        total_results = sum(sum(by_result.values()) for by_result in counts.values())
        tested = [run for run in recent if run.workflow_id in counts]
        failing = sorted(
            (t for t in figures if t.failed_runs), key=lambda t: (-t.failed_runs, t.classname, t.test_name, t.job_name)
        )
        slowest = sorted(figures, key=lambda t: (-t.p95_duration, t.classname, t.test_name, t.job_name))
        return {
            "average_test_count": total_results // len(tested) if tested else 0,
            "most_failed_tests": [_test_body(t) for t in failing[:TOP_TESTS]],
            "most_failed_tests_extra": _ties_left_out(failing, lambda t: t.failed_runs),
            "slowest_tests": [_test_body(t) for t in slowest[:TOP_TESTS]],
            "slowest_tests_extra": _ties_left_out(slowest, lambda t: t.p95_duration),
            "total_test_runs": total_results,
            "test_runs": [_test_run(run, counts[run.workflow_id]) for run in tested],
        }


def _time(value: datetime | None, fallback: datetime) -> str:
    return timestamp(value if value is not None else fallback)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _combined(parts: Any) -> RunStats:
    total = RunStats()
    for part in parts:
        total.total_runs += part.total_runs
        total.successful_runs += part.successful_runs
        total.failed_runs += part.failed_runs
        total.total_duration += part.total_duration
        total.credits += part.credits
    return total


def _summary_figures(now: RunStats, before: RunStats, days: float) -> dict[str, Any]:
    return {
        "metrics": {
            "total_runs": now.total_runs,
            "total_duration_secs": whole(now.total_duration),
            "total_credits_used": whole(now.credits),
            "success_rate": success_rate(now),
            "throughput": now.total_runs / days,
        },
        "trends": {
            "total_runs": trend(now.total_runs, before.total_runs),
            "total_duration_secs": trend(now.total_duration, before.total_duration),
            "total_credits_used": trend(now.credits, before.credits),
            "success_rate": trend(success_rate(now), success_rate(before)),
            "throughput": trend(now.total_runs, before.total_runs),
        },
    }


def _short_figures(now: RunStats, before: RunStats) -> dict[str, Any]:
    return {
        "metrics": {
            "total_credits_used": whole(now.credits),
            "p95_duration_secs": float(whole(now.p95_duration)),
            "total_runs": now.total_runs,
            "success_rate": success_rate(now),
        },
        "trends": {
            "total_credits_used": trend(now.credits, before.credits),
            "p95_duration_secs": trend(now.p95_duration, before.p95_duration),
            "total_runs": trend(now.total_runs, before.total_runs),
            "success_rate": trend(success_rate(now), success_rate(before)),
        },
    }


def _test_body(test: insights.TestFigures) -> dict[str, Any]:
    return {
        "p95_duration": test.p95_duration,
        "total_runs": test.total_runs,
        "classname": test.classname,
        "failed_runs": test.failed_runs,
        "flaky": test.flaky,
        "source": test.source,
        "file": test.file,
        "job_name": test.job_name,
        "test_name": test.test_name,
    }


def _ties_left_out(ranked: Sequence[insights.TestFigures], value: Callable[[insights.TestFigures], float]) -> int:
    """Tests left out of a top list that tie with its last entry."""
    if len(ranked) <= TOP_TESTS:
        return 0
    last = value(ranked[TOP_TESTS - 1])
    return sum(1 for test in ranked[TOP_TESTS:] if value(test) == last)


def _test_run(run: insights.RecentRun, by_result: Mapping[str, int]) -> dict[str, Any]:
    success, failure = by_result.get("success", 0), by_result.get("failure", 0)
    error, skipped = by_result.get("error", 0), by_result.get("skipped", 0)
    ran = success + failure + error
    return {
        "pipeline_number": run.pipeline_number,
        "workflow_id": run.workflow_id,
        "success_rate": success / ran if ran else 0.0,
        "test_counts": {
            "error": error,
            "failure": failure,
            "skipped": skipped,
            "success": success,
            "total": success + failure + error + skipped,
        },
    }
