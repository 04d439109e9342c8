"""The state machines as tables: every allowed transition, a sample of refused ones, and the
derived statuses of jobs and workflows."""

from __future__ import annotations

import pytest

from circlet.engine import states
from circlet.engine.orchestrator import downstream, normalize_step, requirements_verdict, resource_class_of

ALLOWED_JOB = [
    ("blocked", "queued"),
    ("blocked", "on_hold"),
    ("blocked", "success"),  # no-op, lock and unlock jobs
    ("blocked", "not_run"),
    ("blocked", "canceled"),
    ("blocked", "unauthorized"),
    ("blocked", "failed"),  # its resource class is not its organization's (never queued)
    ("queued", "running"),
    ("queued", "canceled"),
    ("queued", "infrastructure_fail"),
    ("queued", "failed"),  # its resource class was deleted while it waited
    ("on_hold", "success"),
    ("on_hold", "canceled"),
    ("running", "success"),
    ("running", "failed"),
    ("running", "canceled"),
    ("running", "timedout"),
    ("running", "infrastructure_fail"),
]


@pytest.mark.parametrize(("current", "new"), ALLOWED_JOB)
def test_allowed_job_transitions(current: str, new: str) -> None:
    states.check(states.JOB_TRANSITIONS, current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("success", "running"),
        ("failed", "success"),
        ("queued", "success"),
        ("on_hold", "running"),
        ("not_run", "queued"),
        ("canceled", "queued"),
        ("blocked", "running"),
        ("running", "queued"),
    ],
)
def test_refused_job_transitions(current: str, new: str) -> None:
    with pytest.raises(states.IllegalTransition):
        states.check(states.JOB_TRANSITIONS, current, new)


def test_every_job_transition_is_listed() -> None:
    listed = {(a, b) for a, targets in states.JOB_TRANSITIONS.items() for b in targets}
    assert listed == set(ALLOWED_JOB)


@pytest.mark.parametrize(
    ("current", "new", "ok"),
    [
        ("pending", "created", True),
        ("pending", "errored", True),
        ("pending", "setup", True),
        ("setup", "created", True),
        ("setup", "errored", True),
        ("created", "pending", False),
        ("errored", "created", False),
    ],
)
def test_pipeline_transitions(current: str, new: str, ok: bool) -> None:
    if ok:
        states.check(states.PIPELINE_TRANSITIONS, current, new)
    else:
        with pytest.raises(states.IllegalTransition):
            states.check(states.PIPELINE_TRANSITIONS, current, new)


@pytest.mark.parametrize(
    ("jobs", "status"),
    [
        (["success", "success"], "success"),
        (["success", "running"], "running"),
        (["queued", "blocked"], "running"),
        (["success", "on_hold", "blocked"], "on_hold"),
        (["failed", "running"], "failing"),
        (["failed", "not_run"], "failed"),
        (["timedout", "success"], "failed"),
        (["unauthorized", "not_run"], "unauthorized"),
        (["unauthorized", "running"], "failing"),
        (["canceled", "success"], "canceled"),
        (["success", "not_run"], "success"),
        (["not_run"], "not_run"),
    ],
)
def test_workflow_status_from_jobs(jobs: list[str], status: str) -> None:
    assert states.workflow_status(jobs) == status


@pytest.mark.parametrize(
    ("tasks", "outcome"),
    [
        (["success", "success"], "success"),
        (["success", "failed"], "failed"),
        (["canceled", "failed"], "failed"),
        (["infrastructure_fail", "failed"], "infrastructure_fail"),
        (["success", "running"], None),
        ([], None),
    ],
)
def test_job_outcome_from_tasks(tasks: list[str], outcome: str | None) -> None:
    assert states.job_outcome(tasks) == outcome


@pytest.mark.parametrize(
    ("requires", "statuses", "verdict"),
    [
        ({"a": ["success"]}, {"a": "success"}, True),
        ({"a": ["success"]}, {"a": "failed"}, False),
        ({"a": ["success"]}, {"a": "running"}, None),
        ({"a": ["failed"]}, {"a": "timedout"}, True),
        ({"a": ["success", "failed"]}, {"a": "failed"}, True),
        ({"a": ["canceled"]}, {"a": "success"}, False),
        ({"a": ["success"], "b": ["success"]}, {"a": "success", "b": "queued"}, None),
        ({"a": ["success"], "b": ["success"]}, {"a": "failed", "b": "queued"}, False),
        ({"a": ["success"]}, {"a": "not_run"}, False),
    ],
)
def test_requirements(requires: dict[str, list[str]], statuses: dict[str, str], verdict: bool | None) -> None:
    assert requirements_verdict(requires, statuses) is verdict


def test_downstream_and_steps_and_resource_classes() -> None:
    graph = {"a": set(), "b": {"a"}, "c": {"b"}, "d": set()}
    assert downstream({"b"}, graph) == {"b", "c"}
    assert normalize_step("checkout") == {"type": "checkout", "name": "Checkout code", "path": None}
    assert normalize_step({"run": "make\nmore"})["name"] == "make"
    assert normalize_step({"save_cache": {"key": "k"}}) == {"type": "save_cache", "key": "k"}
    assert resource_class_of({"resource_class": "acme/linux"}) == "acme/linux"
    assert resource_class_of({"resource_class": "medium"}) == "local"
    assert resource_class_of({}) == "local"
