"""Every query of the Insights tag: aggregates over the run tables, computed in SQL on both databases.

A "run" here is one row of a subquery with the same columns whatever it counts (workflow runs or job
runs): the grouping keys, ``outcome`` (``success``, ``failure``, ``canceled`` or ``other`` for runs not
finished), ``created_at``, ``stopped_at`` and ``duration`` (seconds, NULL until stopped). The figures
are then the same few statements for every operation:

- counts: one ``GROUP BY``;
- durations of successful runs: min, max, sum, sum of squares (for the standard deviation), and the
  median and 95th percentile by rank (``ROW_NUMBER``/``COUNT`` windows): the median is the mean of the
  two middle values (one when the count is odd), the p95 the nearest-rank value (rank ⌈0.95·n⌉), so
  SQLite and PostgreSQL give the same numbers from the same rows;
- recoveries (MTTR): windows over each (project, workflow, branch) sequence of finished runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import Subquery

from circlet.db.dialect import day_start, hour_start, seconds_between
from circlet.db.models import Job, Organization, Pipeline, Project, TestResult, Workflow

WORKFLOW_FAILURES = ("failed", "error", "unauthorized")
WORKFLOW_FINISHED = ("success", *WORKFLOW_FAILURES, "canceled")
JOB_FAILURES = ("failed", "timedout", "infrastructure_fail", "unauthorized")
JOB_FINISHED = ("success", *JOB_FAILURES, "canceled")
TEST_FAILURES = ("failure", "error")


@dataclass(frozen=True)
class RunScope:
    """Which workflow runs count: of these projects, created in [since, until), on one branch or all."""

    project_ids: Sequence[uuid.UUID]
    since: datetime
    until: datetime
    branch: str | None = None  # None: every branch
    workflow_names: Sequence[str] | None = None  # None: every workflow


@dataclass
class RunStats:
    total_runs: int = 0
    successful_runs: int = 0
    failed_runs: int = 0
    canceled_runs: int = 0
    completed_runs: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None
    last_stop: datetime | None = None
    total_duration: float = 0.0  # every finished run
    # durations of the successful runs
    timed_runs: int = 0
    min_duration: float = 0.0
    max_duration: float = 0.0
    sum_duration: float = 0.0
    sum_squares: float = 0.0
    median_duration: float = 0.0
    p95_duration: float = 0.0
    recoveries: int = 0
    recovery_seconds: float = 0.0
    credits: float = 0.0
    median_credits: float = 0.0


Key = tuple[Any, ...]


def credits_expression(rates: Mapping[str, float], resource_class: Any, seconds: Any, parallelism: Any) -> Any:
    """Credits of a job run: minutes × parallelism × the operator's rate for its resource class."""
    if not rates:
        return literal(0.0)
    rate = case(rates, value=resource_class, else_=0.0)
    return seconds * parallelism * rate / 60.0


def _outcome(status: Any, failures: Sequence[str]) -> Any:
    return case(
        (status == "success", "success"),
        (status.in_(failures), "failure"),
        (status == "canceled", "canceled"),
        else_="other",
    )


def workflow_runs(scope: RunScope, keys: Mapping[str, Any] | None = None) -> Subquery:
    """The workflow runs of a scope, with ``name``, ``branch``, ``project_id`` and any extra keys."""
    query = (
        select(
            Workflow.id.label("id"),
            Workflow.project_id.label("project_id"),
            Workflow.name.label("name"),
            func.coalesce(Pipeline.branch, "").label("branch"),
            _outcome(Workflow.status, WORKFLOW_FAILURES).label("outcome"),
            Workflow.created_at.label("created_at"),
            Workflow.stopped_at.label("stopped_at"),
            case(
                (Workflow.status.in_(WORKFLOW_FINISHED), seconds_between(Workflow.created_at, Workflow.stopped_at)),
                else_=None,
            ).label("duration"),
            *[value.label(name) for name, value in (keys or {}).items()],
        )
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(*_scope_filters(scope))
    )
    return query.subquery("runs")


def _scope_filters(scope: RunScope) -> list[ColumnElement[bool]]:
    filters = [
        Workflow.project_id.in_(scope.project_ids),
        Workflow.created_at >= scope.since,
        Workflow.created_at < scope.until,
    ]
    if scope.branch is not None:
        filters.append(Pipeline.branch == scope.branch)
    if scope.workflow_names is not None:
        filters.append(Workflow.name.in_(scope.workflow_names))
    return filters


def job_runs(
    scope: RunScope,
    rates: Mapping[str, float],
    job_name: str | None = None,
    bucket: str | None = None,
) -> Subquery:
    """The build jobs (approvals are not runs) of a scope's workflows: ``name`` is the job's. Job
    durations run from its start to its stop; a time series buckets (and filters) by start."""
    seconds = seconds_between(Job.started_at, Job.stopped_at)
    columns: list[Any] = [
        Job.id.label("id"),
        Job.name.label("name"),
        _outcome(Job.status, JOB_FAILURES).label("outcome"),
        Job.started_at.label("created_at"),
        Job.stopped_at.label("stopped_at"),
        case((Job.status.in_(JOB_FINISHED), seconds), else_=None).label("duration"),
        func.coalesce(credits_expression(rates, Job.resource_class, seconds, Job.parallelism), 0.0).label("credits"),
    ]
    if bucket is not None:
        columns.append(
            (hour_start(Job.started_at) if bucket == "hourly" else day_start(Job.started_at)).label("bucket")
        )
    query = (
        select(*columns)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(Job.type == "build")
    )
    if bucket is None:
        query = query.where(*_scope_filters(scope))
    else:
        # A time series counts job runs by when they started, not when their workflow was created.
        query = query.where(
            Job.project_id.in_(scope.project_ids),
            Job.started_at >= scope.since,
            Job.started_at < scope.until,
            Job.started_at.is_not(None),
        )
        if scope.branch is not None:
            query = query.where(Pipeline.branch == scope.branch)
        if scope.workflow_names is not None:
            query = query.where(Workflow.name.in_(scope.workflow_names))
    if job_name is not None:
        query = query.where(Job.name.contains(job_name, autoescape=True))
    return query.subquery("runs")


async def run_stats(
    session: AsyncSession,
    runs: Subquery,
    keys: Sequence[str],
    *,
    recoveries: bool = False,
    credits: bool = False,
) -> dict[Key, RunStats]:
    """The figures of the runs, grouped by the named columns of the subquery."""
    stats: dict[Key, RunStats] = {}
    for row in await _counts(session, runs, keys):
        key = tuple(row[: len(keys)])
        if not row[len(keys)]:
            continue
        total, ok, failed, canceled, completed, first, last, last_stop, total_duration = row[len(keys) :]
        stats[key] = RunStats(
            total_runs=total,
            successful_runs=ok or 0,
            failed_runs=failed or 0,
            canceled_runs=canceled or 0,
            completed_runs=completed or 0,
            window_start=first,
            window_end=last,
            last_stop=last_stop,
            total_duration=float(total_duration or 0),
        )
    for row in await _durations(session, runs, keys):
        found = stats.get(tuple(row[: len(keys)]))
        if found is None:
            continue
        count, low, high, total, squares, median, p95 = row[len(keys) :]
        if not count:  # an aggregate without GROUP BY answers one row even over no rows
            continue
        found.timed_runs = count
        found.min_duration, found.max_duration = float(low), float(high)
        found.sum_duration, found.sum_squares = float(total), float(squares)
        found.median_duration, found.p95_duration = float(median or 0), float(p95 or 0)
    if recoveries:
        for row in await _recoveries(session, runs, keys):
            found = stats.get(tuple(row[: len(keys)]))
            if found is not None:
                found.recoveries, found.recovery_seconds = row[len(keys)], float(row[len(keys) + 1] or 0)
    if credits:
        for row in await _credits(session, runs, keys):
            found = stats.get(tuple(row[: len(keys)]))
            if found is not None:
                found.credits, found.median_credits = float(row[len(keys)] or 0), float(row[len(keys) + 1] or 0)
    return stats


def _is(column: Any, value: str) -> Any:
    return func.sum(case((column == value, 1), else_=0))


async def _counts(session: AsyncSession, runs: Subquery, keys: Sequence[str]) -> Sequence[Any]:
    group = [runs.c[k] for k in keys]
    query = select(
        *group,
        func.count(),
        _is(runs.c.outcome, "success"),
        _is(runs.c.outcome, "failure"),
        _is(runs.c.outcome, "canceled"),
        func.sum(case((runs.c.outcome != "other", 1), else_=0)),
        func.min(runs.c.created_at),
        func.max(runs.c.created_at),
        func.max(runs.c.stopped_at),
        func.sum(runs.c.duration),
    ).group_by(*group)
    return (await session.execute(query)).all()


def _ranked(runs: Subquery, keys: Sequence[str], value: Any, where: Any) -> Subquery:
    group = [runs.c[k] for k in keys]
    partition = group or None
    return (
        select(
            *group,
            value.label("value"),
            func.row_number().over(partition_by=partition, order_by=value).label("rank"),
            func.count().over(partition_by=partition).label("n"),
        )
        .where(where)
        .subquery("ranked")
    )


def _median(ranked: Subquery) -> Any:
    rank, n = ranked.c.rank, ranked.c.n
    return func.avg(case((or_(rank == (n + 1) // 2, rank == (n + 2) // 2), ranked.c.value), else_=None))


async def _durations(session: AsyncSession, runs: Subquery, keys: Sequence[str]) -> Sequence[Any]:
    ranked = _ranked(runs, keys, runs.c.duration, and_(runs.c.outcome == "success", runs.c.duration.is_not(None)))
    group = [ranked.c[k] for k in keys]
    value = ranked.c.value
    query = select(
        *group,
        func.count(),
        func.min(value),
        func.max(value),
        func.sum(value),
        func.sum(value * value),
        _median(ranked),
        func.max(case((ranked.c.rank == (ranked.c.n * 95 + 99) // 100, value), else_=None)),
    ).group_by(*group)
    return (await session.execute(query)).all()


async def _credits(session: AsyncSession, runs: Subquery, keys: Sequence[str]) -> Sequence[Any]:
    ranked = _ranked(runs, keys, runs.c.credits, runs.c.outcome != "other")
    group = [ranked.c[k] for k in keys]
    query = select(*group, func.sum(ranked.c.value), _median(ranked)).group_by(*group)
    return (await session.execute(query)).all()


async def _recoveries(session: AsyncSession, runs: Subquery, keys: Sequence[str]) -> Sequence[Any]:
    """Recoveries: a success right after one or more failures of the same workflow on the same branch,
    timed from the stop of the first failure of that streak to the stop of the success."""
    group = [runs.c[k] for k in keys]
    sequence = [runs.c.project_id, runs.c.name, runs.c.branch]
    order = [runs.c.created_at, runs.c.id]
    failed = case((runs.c.outcome == "failure", 1), else_=0)
    marked = (
        select(
            *group,
            *[c.label(f"seq_{c.name}") for c in sequence if c.name not in keys],
            runs.c.created_at,
            runs.c.id,
            runs.c.stopped_at,
            failed.label("failed"),
            func.lag(failed).over(partition_by=sequence, order_by=order).label("previous_failed"),
        )
        .where(runs.c.outcome.in_(("success", "failure")), runs.c.stopped_at.is_not(None))
        .subquery("marked")
    )
    m_sequence = [marked.c[c.name] if c.name in keys else marked.c[f"seq_{c.name}"] for c in sequence]
    streak_start = case(
        (and_(marked.c.failed == 1, func.coalesce(marked.c.previous_failed, 0) == 0), marked.c.stopped_at),
        else_=None,
    )
    latest = (
        select(
            *[marked.c[k] for k in keys],
            marked.c.failed,
            marked.c.previous_failed,
            marked.c.stopped_at,
            func.max(streak_start)
            .over(partition_by=m_sequence, order_by=[marked.c.created_at, marked.c.id], rows=(None, 0))
            .label("streak_start"),
        )
    ).subquery("latest")
    l_group = [latest.c[k] for k in keys]
    query = (
        select(*l_group, func.count(), func.sum(seconds_between(latest.c.streak_start, latest.c.stopped_at)))
        .where(latest.c.failed == 0, latest.c.previous_failed == 1)
        .group_by(*l_group)
    )
    return (await session.execute(query)).all()


def _workflow_key(name: str) -> Any:
    return {
        "name": Workflow.name,
        "branch": func.coalesce(Pipeline.branch, ""),
        "project_id": Workflow.project_id,
    }[name]


async def workflow_credits(
    session: AsyncSession, scope: RunScope, rates: Mapping[str, float], keys: Sequence[str]
) -> dict[Key, float]:
    """Credits of the scope's workflows (the sum of their jobs'), grouped by ``name``, ``branch`` or
    ``project_id``."""
    if not rates:
        return {}
    seconds = seconds_between(Job.started_at, Job.stopped_at)
    group = [_workflow_key(k) for k in keys]
    query = (
        select(*group, func.sum(credits_expression(rates, Job.resource_class, seconds, Job.parallelism)))
        .select_from(Job)
        .join(Workflow, Workflow.id == Job.workflow_id)
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(*_scope_filters(scope), Job.type == "build", Job.stopped_at.is_not(None), Job.started_at.is_not(None))
        .group_by(*group)
    )
    return {tuple(row[:-1]): float(row[-1] or 0) for row in (await session.execute(query)).all()}


# -- lists ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowRun:
    id: uuid.UUID
    branch: str
    status: str
    created_at: datetime
    stopped_at: datetime
    duration: float
    is_approval: bool


async def list_workflow_runs(
    session: AsyncSession,
    scope: RunScope,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WorkflowRun]:
    """Finished runs, newest first, after a keyset position (created_at, id)."""
    has_approval = (
        select(Job.id).where(Job.workflow_id == Workflow.id, Job.type == "approval").exists().label("is_approval")
    )
    query = (
        select(
            Workflow.id,
            func.coalesce(Pipeline.branch, ""),
            Workflow.status,
            Workflow.created_at,
            Workflow.stopped_at,
            seconds_between(Workflow.created_at, Workflow.stopped_at),
            has_approval,
        )
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(*_scope_filters(scope), Workflow.status.in_(WORKFLOW_FINISHED), Workflow.stopped_at.is_not(None))
        .order_by(Workflow.created_at.desc(), Workflow.id.desc())
        .limit(limit)
    )
    if after is not None:
        query = query.where(
            or_(Workflow.created_at < after[0], and_(Workflow.created_at == after[0], Workflow.id < after[1]))
        )
    return [
        WorkflowRun(row[0], row[1], row[2], row[3], row[4] or row[3], float(row[5] or 0), bool(row[6]))
        for row in (await session.execute(query)).all()
    ]


async def credits_of_workflows(
    session: AsyncSession, workflow_ids: Sequence[uuid.UUID], rates: Mapping[str, float]
) -> dict[uuid.UUID, float]:
    if not rates or not workflow_ids:
        return {}
    seconds = seconds_between(Job.started_at, Job.stopped_at)
    query = (
        select(Job.workflow_id, func.sum(credits_expression(rates, Job.resource_class, seconds, Job.parallelism)))
        .where(
            Job.workflow_id.in_(workflow_ids),
            Job.type == "build",
            Job.stopped_at.is_not(None),
            Job.started_at.is_not(None),
        )
        .group_by(Job.workflow_id)
    )
    return {row[0]: float(row[1] or 0) for row in (await session.execute(query)).all()}


async def branches(
    session: AsyncSession, project_id: uuid.UUID, since: datetime, workflow_name: str | None, limit: int
) -> list[str]:
    query = (
        select(Pipeline.branch)
        .distinct()
        .join(Workflow, Workflow.pipeline_id == Pipeline.id)
        .where(Workflow.project_id == project_id, Workflow.created_at >= since, Pipeline.branch.is_not(None))
        .order_by(Pipeline.branch)
        .limit(limit)
    )
    if workflow_name is not None:
        query = query.where(Workflow.name == workflow_name)
    return [row[0] or "" for row in (await session.execute(query)).all()]


async def workflow_names(session: AsyncSession, project_id: uuid.UUID, since: datetime) -> list[str]:
    query = (
        select(Workflow.name)
        .distinct()
        .where(Workflow.project_id == project_id, Workflow.created_at >= since)
        .order_by(Workflow.name)
    )
    return [row[0] for row in (await session.execute(query)).all()]


async def org_projects(session: AsyncSession, org_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    query = select(Project.id, Project.name).where(Project.org_id == org_id).order_by(Project.name_key)
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]


async def find_org(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await session.get(Organization, org_id)


# -- tests ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlakyTest:
    classname: str
    test_name: str
    file: str
    source: str
    job_name: str
    times_flaked: int
    time_wasted: float
    job_number: int | None
    pipeline_number: int
    workflow_name: str
    workflow_id: uuid.UUID
    workflow_created_at: datetime


def _test_rows(project_id: uuid.UUID, since: datetime) -> Subquery:
    return (
        select(
            TestResult.classname.label("classname"),
            TestResult.name.label("test_name"),
            func.coalesce(TestResult.file, "").label("file"),
            TestResult.source.label("source"),
            Job.name.label("job_name"),
            Pipeline.revision.label("revision"),
            TestResult.result.label("result"),
            TestResult.created_at.label("created_at"),
            Job.id.label("job_id"),
            seconds_between(Job.started_at, Job.stopped_at).label("job_seconds"),
        )
        .join(Job, Job.id == TestResult.job_id)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(TestResult.project_id == project_id, TestResult.created_at >= since, Pipeline.revision.is_not(None))
        .subquery("tests")
    )


async def flaky_tests(
    session: AsyncSession, project_id: uuid.UUID, since: datetime, flaked_since: datetime
) -> list[FlakyTest]:
    """Tests of a job that failed on a commit where they also passed; a flake is such a failure. Only
    tests whose latest flake is after ``flaked_since`` are still flaky. One pass groups the results by
    (test, commit); the rows of the latest flakes are then found by their time."""
    rows = _test_rows(project_id, since)
    test = [rows.c.classname, rows.c.test_name, rows.c.file, rows.c.source, rows.c.job_name]
    failed = rows.c.result.in_(TEST_FAILURES)
    per_commit = (
        select(
            *test,
            func.max(case((rows.c.result == "success", 1), else_=0)).label("passed"),
            func.sum(case((failed, 1), else_=0)).label("failures"),
            func.sum(case((failed, func.coalesce(rows.c.job_seconds, 0.0)), else_=0.0)).label("wasted"),
            func.max(case((failed, rows.c.created_at), else_=None)).label("latest"),
        )
        .group_by(*test, rows.c.revision)
        .subquery("per_commit")
    )
    c_test = [per_commit.c[c.name] for c in test]
    summary = (
        select(
            *c_test,
            func.sum(per_commit.c.failures).label("times_flaked"),
            func.sum(per_commit.c.wasted).label("time_wasted"),
            func.max(per_commit.c.latest).label("latest"),
        )
        .where(per_commit.c.passed == 1, per_commit.c.failures > 0)
        .group_by(*c_test)
        .having(func.max(per_commit.c.latest) >= flaked_since)
        .order_by(per_commit.c.classname, per_commit.c.test_name, per_commit.c.job_name)
    )
    found: list[Any] = list((await session.execute(summary)).all())
    flaky: list[FlakyTest] = []
    for classname, test_name, file, source, job_name, times, wasted, latest in found:
        # The flake shown: the test's latest failure (of that job name) at the time of its latest flake.
        detail = (
            select(Job.number, Pipeline.number, Workflow.name, Workflow.id, Workflow.created_at)
            .select_from(TestResult)
            .join(Job, Job.id == TestResult.job_id)
            .join(Workflow, Workflow.id == Job.workflow_id)
            .join(Pipeline, Pipeline.id == Job.pipeline_id)
            .where(
                TestResult.project_id == project_id,
                TestResult.created_at == latest,
                TestResult.classname == classname,
                TestResult.name == test_name,
                Job.name == job_name,
                TestResult.result.in_(TEST_FAILURES),
            )
            .limit(1)
        )
        row = (await session.execute(detail)).first()
        if row is None:
            continue
        flaky.append(
            FlakyTest(
                classname=classname,
                test_name=test_name,
                file=file,
                source=source,
                job_name=job_name,
                times_flaked=int(times),
                time_wasted=float(wasted or 0),
                job_number=row[0],
                pipeline_number=row[1],
                workflow_name=row[2],
                workflow_id=row[3],
                workflow_created_at=row[4],
            )
        )
    flaky.sort(key=lambda t: (-t.times_flaked, t.classname, t.test_name, t.job_name))
    return flaky


@dataclass(frozen=True)
class RecentRun:
    workflow_id: uuid.UUID
    pipeline_number: int


async def recent_workflow_runs(session: AsyncSession, scope: RunScope, limit: int) -> list[RecentRun]:
    query = (
        select(Workflow.id, Pipeline.number)
        .join(Pipeline, Pipeline.id == Workflow.pipeline_id)
        .where(*_scope_filters(scope), Workflow.status.in_(WORKFLOW_FINISHED))
        .order_by(Workflow.created_at.desc(), Workflow.id.desc())
        .limit(limit)
    )
    return [RecentRun(row[0], row[1]) for row in (await session.execute(query)).all()]


@dataclass(frozen=True)
class TestFigures:
    __test__ = False  # not a pytest class

    classname: str
    test_name: str
    file: str
    source: str
    job_name: str
    total_runs: int
    failed_runs: int
    p95_duration: float
    flaky: bool


async def test_figures(session: AsyncSession, workflow_ids: Sequence[uuid.UUID]) -> list[TestFigures]:
    """Per test (of a job) across the given workflow runs: runs, failures, p95 run time, and whether it
    both passed and failed on one commit among them."""
    if not workflow_ids:
        return []
    rows = (
        select(
            TestResult.classname.label("classname"),
            TestResult.name.label("test_name"),
            func.coalesce(TestResult.file, "").label("file"),
            TestResult.source.label("source"),
            Job.name.label("job_name"),
            TestResult.result.label("result"),
            TestResult.run_time.label("run_time"),
            Pipeline.revision.label("revision"),
        )
        .join(Job, Job.id == TestResult.job_id)
        .join(Pipeline, Pipeline.id == Job.pipeline_id)
        .where(Job.workflow_id.in_(workflow_ids))
        .subquery("tests")
    )
    test = [rows.c.classname, rows.c.test_name, rows.c.file, rows.c.source, rows.c.job_name]
    failed = case((rows.c.result.in_(TEST_FAILURES), 1), else_=0)
    passed = case((rows.c.result == "success", 1), else_=0)
    per_commit = (
        select(*test, func.max(failed).label("failed"), func.max(passed).label("passed"))
        .group_by(*test, rows.c.revision)
        .subquery("per_commit")
    )
    c_test = [per_commit.c[c.name] for c in test]
    flaky = (
        select(*c_test, func.max(per_commit.c.failed * per_commit.c.passed).label("flaky"))
        .group_by(*c_test)
        .subquery("flaky")
    )
    ranked = select(
        *test,
        rows.c.run_time,
        failed.label("failed"),
        func.row_number().over(partition_by=test, order_by=rows.c.run_time).label("rank"),
        func.count().over(partition_by=test).label("n"),
    ).subquery("ranked")
    r_test = [ranked.c[c.name] for c in test]
    figures = (
        select(
            *r_test,
            func.count().label("total"),
            func.sum(ranked.c.failed).label("failed"),
            func.max(case((ranked.c.rank == (ranked.c.n * 95 + 99) // 100, ranked.c.run_time), else_=None)).label(
                "p95"
            ),
        )
        .group_by(*r_test)
        .subquery("figures")
    )
    query = select(
        *[figures.c[c.name] for c in test], figures.c.total, figures.c.failed, figures.c.p95, flaky.c.flaky
    ).join(flaky, and_(*[flaky.c[c.name] == figures.c[c.name] for c in test]))
    return [
        TestFigures(row[0], row[1], row[2], row[3], row[4], row[5], row[6] or 0, float(row[7] or 0), bool(row[8]))
        for row in (await session.execute(query)).all()
    ]


async def test_counts(session: AsyncSession, workflow_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Test results of each workflow run, by result."""
    if not workflow_ids:
        return {}
    query = (
        select(Job.workflow_id, TestResult.result, func.count())
        .join(Job, Job.id == TestResult.job_id)
        .where(Job.workflow_id.in_(workflow_ids))
        .group_by(Job.workflow_id, TestResult.result)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {}
    for workflow_id, result, count in (await session.execute(query)).all():
        counts.setdefault(workflow_id, {})[result] = count
    return counts
