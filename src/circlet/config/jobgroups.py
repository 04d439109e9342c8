"""Job groups (SEMANTICS R-11): the top-level ``job-groups`` section and the expansion of a
workflow entry that invokes a group into the group's jobs plus synthetic boundary jobs.

An invocation ``- G: {name?, requires?, filters?, serial-group?}`` named ``I`` (its ``name`` or
``G``) becomes, in place::

    I:start (no-op) | I:lock (lock)     requires and filters of the invocation
    the group's jobs                    named ``<name>-<job>`` with ``name``, else as in the group;
                                        the roots require the entry job
    I:end (no-op)                       requires every leaf of the group
    I:unlock (unlock)                   only with serial-group: requires I:lock, I:end (terminal)

``requires: [I]`` elsewhere in the workflow means ``I:end``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import Diagnostics, Location
from .graph import ALL_STATUSES
from .loader import YMap, loc_of
from .templates import Scope, substitute
from .workflows import (
    Entry,
    assign_names,
    check_serial_group,
    expand_entry,
    resolve_requires,
    split_entry,
)

GROUP_ENTRY_KEYS = ("name", "requires", "filters", "serial-group")
NOT_ON_GROUP_ENTRY = ("matrix", "override-with", "context", "pre-steps", "post-steps", "type")
_GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z\s\d_-]*")
START, LOCK, END, UNLOCK = ":start", ":lock", ":end", ":unlock"


@dataclass
class JobGroup:
    """One ``job-groups`` definition: its raw job entries and the names they define."""

    name: str
    jobs: list[Any]
    path: str
    loc: Location | None
    names: set[str] = field(default_factory=set)


def parse_job_groups(raw: Any, job_names: list[str], diag: Diagnostics) -> dict[str, JobGroup]:
    """Check the ``job-groups`` section's shape (R-11.1, R-11.3) and return the usable groups."""
    groups: dict[str, JobGroup] = {}
    if raw is None:
        return groups
    if not isinstance(raw, YMap):
        diag.error("job-groups must be a map of group name to {jobs: [...]}", "job-groups", loc_of(raw))
        return groups
    jobs_lower = {name.lower(): name for name in job_names}
    for name, body in raw.items():
        path = f"job-groups.{name}"
        loc = raw.loc(name)
        if not _GROUP_NAME.fullmatch(name):
            diag.error(
                "a job group name must start with a letter and contain only letters, digits, spaces, '_' and '-'",
                path,
                loc,
            )
        clash = name.lower() in jobs_lower
        if clash:
            # Reported once; workflow entries named so keep meaning the job.
            diag.error(f"'{name}' is defined both as a job and as a job group", path, loc)
        if not isinstance(body, YMap):
            diag.error("a job group must be a map with a list of 'jobs'", path, loc)
            continue
        for key in body:
            if key == "parameters":
                diag.error("a job group cannot declare parameters", f"{path}.parameters", body.loc(key))
            elif key != "jobs":
                diag.error(
                    f"unknown job group key '{key}' (a job group has only 'jobs')", f"{path}.{key}", body.loc(key)
                )
        jobs = body.get("jobs")
        if not isinstance(jobs, list) or not jobs:
            diag.error("a job group needs a non-empty list of 'jobs'", path, loc)
            continue
        if not clash:
            groups[name] = JobGroup(name, jobs, path, loc)
    for group in groups.values():
        for index, raw_entry in enumerate(group.jobs):
            ref = _entry_ref(raw_entry)
            if ref is None:
                continue
            if ref in groups:
                diag.error(
                    f"job group '{group.name}' cannot contain job group '{ref}' (job groups do not nest)",
                    f"{group.path}.jobs[{index}]",
                    loc_of(group.jobs, index),
                )
            group.names.add(ref)
            args = raw_entry.get(ref) if isinstance(raw_entry, dict) else None
            if isinstance(args, dict) and isinstance(args.get("name"), str):
                group.names.add(args["name"])
    return groups


def _entry_ref(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and len(raw) == 1:
        return str(next(iter(raw)))
    return None


def build_workflow_entries(
    raw_entries: list[Any], wf_path: str, scope: Scope, groups: Mapping[str, JobGroup], diag: Diagnostics
) -> list[Entry]:
    """The entries of a workflow, with matrix entries and job group invocations expanded."""
    entries: list[Entry] = []
    used: dict[str, str] = {}
    for index, raw in enumerate(raw_entries):
        path = f"{wf_path}.jobs[{index}]"
        loc = loc_of(raw_entries, index)
        split = split_entry(raw, path, loc, diag)
        if split is None:
            continue
        ref, args = split
        group = groups.get(ref)
        if group is None:
            expanded = expand_entry(ref, args, path, loc, scope, diag)
        else:
            expanded = _invoke_group(group, args, path, loc, scope, groups, used, diag)
        entries.extend(expanded)
        count_jobs(len(entries), len(expanded), path, loc, diag)
    return entries


def count_jobs(in_workflow: int, added: int, path: str, loc: Location | None, diag: Diagnostics) -> None:
    """Charge a workflow's newly expanded entries to the workflow and the pipeline (each entry is
    at most one matrix, itself bounded before it is built)."""
    budget = diag.budget
    budget.jobs += added
    if in_workflow > budget.limits.jobs_per_workflow:
        diag.over_limit(
            "jobs in a workflow", in_workflow, budget.limits.jobs_per_workflow, "jobs_per_workflow", path, loc
        )
    if budget.jobs > budget.limits.jobs_per_pipeline:
        diag.over_limit(
            "jobs in a pipeline", budget.jobs, budget.limits.jobs_per_pipeline, "jobs_per_pipeline", path, loc
        )


def _invoke_group(
    group: JobGroup,
    raw_args: YMap,
    path: str,
    loc: Location | None,
    scope: Scope,
    groups: Mapping[str, JobGroup],
    used: dict[str, str],
    diag: Diagnostics,
) -> list[Entry]:
    for key in raw_args:
        key_loc = raw_args.loc(key) or loc
        if key in NOT_ON_GROUP_ENTRY:
            diag.error(
                f"'{key}' is not allowed on a job group entry (only {', '.join(GROUP_ENTRY_KEYS)})",
                f"{path}.{key}",
                key_loc,
            )
        elif key not in GROUP_ENTRY_KEYS:
            diag.error(f"job group '{group.name}' takes no parameters (got '{key}')", f"{path}.{key}", key_loc)
    kept = raw_args.derive()
    for key, value in raw_args.items():
        if key in GROUP_ENTRY_KEYS:
            kept[key] = value
    args: YMap = substitute(kept, scope, diag, path)
    name = args.get("name")
    prefix = name if isinstance(name, str) and name else None
    invocation = prefix or group.name
    first = used.get(invocation.lower())
    if first is not None:
        diag.error(
            f"job group '{group.name}' is used more than once in this workflow without "
            f"a distinct 'name' (first at {first})",
            path,
            loc,
        )
        return []
    used[invocation.lower()] = path
    serial_group = args.get("serial-group")
    if "serial-group" in args:
        check_serial_group(serial_group, f"{path}.serial-group", raw_args.loc("serial-group") or loc, diag)
    serial = serial_group if isinstance(serial_group, str) and serial_group.strip() else None
    filters = args.get("filters")

    members = _group_members(group, scope, groups, diag)
    renames = {m.name: f"{prefix}-{m.name}" if prefix else m.name for m in members}
    required = {r for m in members for r in m.requires}
    start_name = invocation + (LOCK if serial else START)
    for member in members:
        member.name = renames[member.name]
        if member.alias is not None:
            member.alias = f"{prefix}-{member.alias}" if prefix else member.alias
        member.requires = {renames[r]: s for r, s in member.requires.items()} or {start_name: ("success",)}
        member.group = invocation
        member.group_filters = filters
    leaves = [renames[old] for old in renames if old not in required]

    start_args = args.derive()
    for key in ("requires", "filters"):
        if key in args:
            start_args[key] = args[key]
    start = Entry(
        start_name,
        start_name,
        True,
        start_args,
        path,
        loc,
        group=invocation,
        synthetic="lock" if serial else "no-op",
        serial_group=serial,
    )
    end_name = invocation + END
    end = Entry(
        end_name,
        end_name,
        True,
        args.derive(),
        path,
        loc,
        alias=invocation,
        group=invocation,
        synthetic="no-op",
        group_filters=filters,
        resolved=True,
        requires={leaf: ("success",) for leaf in leaves},
    )
    result = [start, *members, end]
    if serial:
        unlock_name = invocation + UNLOCK
        result.append(
            Entry(
                unlock_name,
                unlock_name,
                True,
                args.derive(),
                path,
                loc,
                group=invocation,
                synthetic="unlock",
                serial_group=serial,
                group_filters=filters,
                resolved=True,
                requires={start_name: ("success",), end_name: ALL_STATUSES},
            )
        )
    return result


def _group_members(group: JobGroup, scope: Scope, groups: Mapping[str, JobGroup], diag: Diagnostics) -> list[Entry]:
    """The group's own entries, named and with ``requires`` resolved inside the group."""
    raw = group.jobs
    members: list[Entry] = []
    for index, raw_entry in enumerate(raw):
        where = f"{group.path}.jobs[{index}]"
        loc = loc_of(raw, index)
        split = split_entry(raw_entry, where, loc, diag)
        if split is None or split[0] in groups:
            continue
        members.extend(expand_entry(split[0], split[1], where, loc, scope, diag))
        if len(members) > diag.budget.limits.jobs_per_workflow:
            diag.over_limit(
                "jobs in a job group",
                len(members),
                diag.budget.limits.jobs_per_workflow,
                "jobs_per_workflow",
                where,
                loc,
            )
    assign_names(members, group.path, diag)
    foreign: dict[str, str] = {}
    for other in groups.values():
        foreign[other.name] = other.name
        if other.name != group.name:
            for name in other.names:
                foreign.setdefault(name, other.name)
    resolve_requires(members, diag, group=group.name, foreign=foreign)
    for member in members:
        member.explicit_name = True
        member.resolved = True
    return members


def synthetic_job(entry: Entry) -> dict[str, Any]:
    """The processed-config job of a boundary job: ``{type: no-op}``, or ``{type: lock|unlock,
    key: <serial-group>}``."""
    job: dict[str, Any] = {"type": entry.synthetic}
    if entry.serial_group is not None:
        job["key"] = entry.serial_group
    return job
