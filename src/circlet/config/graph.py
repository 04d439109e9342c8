"""The workflow graph the pipeline engine consumes (SEMANTICS R-14.2), and per-pipeline filtering
of it by branch/tag (R-9.6, R-9.7, R-9.8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .expressions import ExpressionError, evaluate, full_match, parse_expression, truthy

ALL_STATUSES = ("success", "failed", "canceled", "unauthorized", "not_run")
"""Statuses a ``requires`` entry may wait for; ``terminal`` means all of them."""


@dataclass(frozen=True)
class JobNode:
    """One job of a workflow after matrix expansion.

    ``name`` is unique in the workflow; ``job`` is the key of the job in the processed config's
    ``jobs`` (None for approval nodes); ``type`` is ``build``, ``approval``, or for a job
    group's boundary jobs ``no-op`` (completes without a runner), ``lock``/``unlock`` (take and
    release the ``serial_group`` lock; R-11.2); ``requires`` maps a required node name to the
    statuses that satisfy it; ``executor`` holds the resolved docker/machine/macos and related
    keys; ``steps`` are fully expanded.
    """

    name: str
    job: str | None
    type: str
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    context: tuple[str, ...] = ()
    filters: Any = None
    serial_group: str | None = None
    executor: dict[str, Any] = field(default_factory=dict)
    steps: list[Any] = field(default_factory=list)
    matrix: dict[str, Any] | None = None


@dataclass(frozen=True)
class WorkflowGraph:
    name: str
    jobs: list[JobNode]
    triggers: Any = None
    max_auto_reruns: int | None = None


Lookup = Callable[[str], Any]


def filter_workflow(workflow: WorkflowGraph, branch: str | None, tag: str | None, lookup: Lookup) -> WorkflowGraph:
    """Drop the jobs a push of ``branch`` or ``tag`` does not run, then the jobs whose
    requirements were removed (all of them on a branch; any of them on a tag)."""
    kept = {n.name: n for n in workflow.jobs if _accepts(n.filters, branch, tag, lookup)}
    changed = True
    while changed:
        changed = False
        for name, node in list(kept.items()):
            remaining = {r: s for r, s in node.requires.items() if r in kept}
            if len(remaining) == len(node.requires):
                continue
            lost_all = not remaining
            if lost_all or (tag and not isinstance(node.filters, str)):
                del kept[name]
            else:
                kept[name] = replace(node, requires=remaining)
            changed = True
    return replace(workflow, jobs=[kept[n.name] for n in workflow.jobs if n.name in kept])


def _accepts(filters: Any, branch: str | None, tag: str | None, lookup: Lookup) -> bool:
    if isinstance(filters, str):
        try:
            return truthy(evaluate(parse_expression(filters), lookup))
        except ExpressionError:
            return False
    filters = filters if isinstance(filters, dict) else {}
    if tag:
        tags = filters.get("tags")
        return isinstance(tags, dict) and _only_ignore_accepts(tags, tag)
    branches = filters.get("branches")
    if not isinstance(branches, dict) or branch is None:
        return True
    return _only_ignore_accepts(branches, branch)


def _only_ignore_accepts(rule: dict[str, Any], name: str) -> bool:
    if "only" in rule:
        return matches_any(rule["only"], name)
    if "ignore" in rule:
        return not matches_any(rule["ignore"], name)
    return True


def matches_any(patterns: Any, name: str) -> bool:
    """``/re/`` items are full-match regexes; other items match exactly."""
    items = patterns if isinstance(patterns, list) else [patterns]
    for item in items:
        text = str(item)
        if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
            try:
                if full_match(text[1:-1], name):
                    return True
            except ExpressionError:
                continue
        elif text == name:
            return True
    return False
