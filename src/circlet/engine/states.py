"""Every status of pipelines, workflows, jobs and tasks, and every allowed transition, in one place.

The engine changes a status only after :func:`check` against these tables, so they are the whole
state machine (tests/engine/test_states.py walks them).
"""

from __future__ import annotations

from collections.abc import Iterable

# -- pipelines (the spec's enum) ------------------------------------------------------------------
PIPELINE_PENDING = "pending"
PIPELINE_CREATED = "created"
PIPELINE_ERRORED = "errored"
PIPELINE_SETUP = "setup"
PIPELINE_TRANSITIONS: dict[str, frozenset[str]] = {
    # Triggered: the config is being fetched and compiled.
    PIPELINE_PENDING: frozenset({PIPELINE_CREATED, PIPELINE_ERRORED, PIPELINE_SETUP}),
    # A setup workflow runs; its continuation creates the real workflows, or fails.
    PIPELINE_SETUP: frozenset({PIPELINE_CREATED, PIPELINE_ERRORED}),
    PIPELINE_CREATED: frozenset(),
    PIPELINE_ERRORED: frozenset(),
}

# -- jobs -----------------------------------------------------------------------------------------
BLOCKED = "blocked"
QUEUED = "queued"
RUNNING = "running"
ON_HOLD = "on_hold"
SUCCESS = "success"
FAILED = "failed"
CANCELED = "canceled"
NOT_RUN = "not_run"
TIMEDOUT = "timedout"
INFRASTRUCTURE_FAIL = "infrastructure_fail"
UNAUTHORIZED = "unauthorized"

JOB_FINAL = frozenset({SUCCESS, FAILED, CANCELED, NOT_RUN, TIMEDOUT, INFRASTRUCTURE_FAIL, UNAUTHORIZED})
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    # Waiting for the jobs it requires (or, ready, for its serial group). A no-op, lock or unlock
    # job (a job group's boundary) succeeds straight from here, without a runner.
    # A build job whose resource class is not its organization's fails here, never queued.
    BLOCKED: frozenset({QUEUED, ON_HOLD, SUCCESS, NOT_RUN, CANCELED, UNAUTHORIZED, FAILED}),
    # Tasks wait for a runner. One whose resource class is deleted while it waits fails unrun.
    QUEUED: frozenset({RUNNING, CANCELED, INFRASTRUCTURE_FAIL, FAILED}),
    # An approval job waits for a person.
    ON_HOLD: frozenset({SUCCESS, CANCELED}),
    RUNNING: frozenset({SUCCESS, FAILED, CANCELED, TIMEDOUT, INFRASTRUCTURE_FAIL}),
    **{final: frozenset() for final in JOB_FINAL},
}
# What a runner may report for a task (the protocol's `complete`).
TASK_OUTCOMES = frozenset({SUCCESS, FAILED, CANCELED, TIMEDOUT, INFRASTRUCTURE_FAIL})
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    # Failed unclaimed: its resource class was deleted, or is not its organization's.
    QUEUED: frozenset({RUNNING, CANCELED, FAILED}),
    RUNNING: TASK_OUTCOMES,
    **{final: frozenset() for final in TASK_OUTCOMES},
}
# Of a job's tasks, the worst outcome is the job's: a canceled index cancels the job, and so on.
TASK_OUTCOME_ORDER = (INFRASTRUCTURE_FAIL, TIMEDOUT, FAILED, CANCELED, SUCCESS)

# -- workflows ------------------------------------------------------------------------------------
WF_RUNNING = "running"
WF_ON_HOLD = "on_hold"
WF_FAILING = "failing"
WF_SUCCESS = "success"
WF_FAILED = "failed"
WF_ERROR = "error"
WF_CANCELED = "canceled"
WF_NOT_RUN = "not_run"
WF_UNAUTHORIZED = "unauthorized"
WORKFLOW_FINAL = frozenset({WF_SUCCESS, WF_FAILED, WF_ERROR, WF_CANCELED, WF_NOT_RUN, WF_UNAUTHORIZED})
WORKFLOW_TRANSITIONS: dict[str, frozenset[str]] = {
    WF_RUNNING: frozenset({WF_ON_HOLD, WF_FAILING, *WORKFLOW_FINAL}),
    WF_ON_HOLD: frozenset({WF_RUNNING, WF_FAILING, *WORKFLOW_FINAL}),
    WF_FAILING: frozenset({WF_FAILED, WF_CANCELED, WF_UNAUTHORIZED}),
    **{final: frozenset() for final in WORKFLOW_FINAL},
}
JOB_FAILURES = frozenset({FAILED, TIMEDOUT, INFRASTRUCTURE_FAIL})


class IllegalTransition(Exception):
    pass


def check(table: dict[str, frozenset[str]], current: str, new: str) -> None:
    """Raise unless ``current -> new`` is in ``table`` (staying put is always allowed)."""
    if current != new and new not in table.get(current, frozenset()):
        raise IllegalTransition(f"{current} -> {new}")


def job_outcome(task_statuses: Iterable[str]) -> str | None:
    """The status of a job from its tasks', once every task has ended; None while any runs."""
    statuses = list(task_statuses)
    if not statuses or any(s not in TASK_OUTCOMES for s in statuses):
        return None
    for outcome in TASK_OUTCOME_ORDER:
        if outcome in statuses:
            return outcome
    return SUCCESS


def requirement_state(required_status: str, accepted: Iterable[str]) -> bool | None:
    """Whether a requirement is met (True), can no longer be met (False), or is undecided (None).

    A requirement listing `failed` accepts every failure status (timedout, infrastructure_fail), as
    CircleCI's does."""
    if required_status not in JOB_FINAL:
        return None
    accepted = set(accepted)
    if FAILED in accepted:
        accepted |= JOB_FAILURES
    return required_status in accepted


def workflow_status(job_statuses: Iterable[str], canceled: bool = False) -> str:
    """The status of a workflow from its jobs'."""
    statuses = list(job_statuses)
    if canceled:
        return WF_CANCELED
    failed = any(s in JOB_FAILURES for s in statuses)
    if all(s in JOB_FINAL for s in statuses):
        if failed:
            return WF_FAILED
        if UNAUTHORIZED in statuses:
            return WF_UNAUTHORIZED
        if CANCELED in statuses:
            return WF_CANCELED
        if statuses and all(s == NOT_RUN for s in statuses):
            return WF_NOT_RUN
        return WF_SUCCESS
    if failed or UNAUTHORIZED in statuses:
        return WF_FAILING
    if any(s in (QUEUED, RUNNING) for s in statuses):
        return WF_RUNNING
    if ON_HOLD in statuses:
        return WF_ON_HOLD
    return WF_RUNNING
