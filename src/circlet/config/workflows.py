"""Workflow job entries (SEMANTICS R-9, R-10): matrix expansion, naming, ``requires`` resolution
and cycle detection."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import Diagnostics, Location
from .graph import ALL_STATUSES
from .loader import YMap, loc_of
from .namespaces import did_you_mean
from .parameters import RESERVED_JOB_PARAMETERS, enum_text
from .templates import Scope, substitute

# The keys a workflow's job entry takes besides parameters are exactly the names a job parameter may
# not have: one set, so the two cannot drift apart.
ENTRY_KEYS = RESERVED_JOB_PARAMETERS
_STATUSES = frozenset(ALL_STATUSES) | {"terminal"}
_SERIAL_GROUP = re.compile(r"[A-Za-z0-9._/\-]+")
MAX_SERIAL_GROUP = 512


@dataclass
class Entry:
    """One workflow job entry after matrix expansion and substitution."""

    ref: str
    name: str
    explicit_name: bool
    args: YMap
    path: str
    loc: Location | None
    alias: str | None = None
    matrix: dict[str, Any] | None = None
    requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requires_written: list[Any] = field(default_factory=list)
    group: str | None = None
    """For the jobs of an expanded job group (R-11): the group invocation's name."""
    synthetic: str | None = None
    """For a job group's boundary jobs: ``no-op``, ``lock`` or ``unlock``."""
    serial_group: str | None = None
    """For a lock/unlock boundary job: the invocation's ``serial-group``."""
    group_filters: Any = None
    """The group invocation's ``filters``, applied to group jobs without filters of their own."""
    resolved: bool = False
    """``requires`` already resolved (inside a job group)."""

    @property
    def type(self) -> str:
        value = self.args.get("type")
        return value if isinstance(value, str) else "build"

    def job_arguments(self) -> YMap:
        out = self.args.derive()
        for key, value in self.args.items():
            if key not in ENTRY_KEYS:
                out[key] = value
        return out


def split_entry(raw: Any, path: str, loc: Location | None, diag: Diagnostics) -> tuple[str, YMap] | None:
    """``- name`` or ``- name: {args}`` → (name, args)."""
    if isinstance(raw, str):
        return raw, YMap()
    if isinstance(raw, dict) and len(raw) == 1:
        ((ref, args),) = raw.items()
        if args is None:
            return str(ref), YMap()
        if isinstance(args, YMap):
            return str(ref), args
        diag.error(f"the arguments of job '{ref}' must be a map", path, loc)
        return None
    diag.error("a workflow job entry must be a job name or a single-key map", path, loc)
    return None


def expand_matrix(matrix: Any, path: str, loc: Location | None, diag: Diagnostics) -> list[dict[str, Any]] | None:
    """The combinations of a ``matrix`` (cartesian product minus ``exclude``)."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get("parameters"), dict):
        diag.error("matrix needs a 'parameters' map", path, loc)
        return None
    params = matrix["parameters"]
    unknown = sorted(k for k in matrix if k not in ("parameters", "exclude", "alias"))
    if unknown:
        diag.error(f"unknown matrix key(s): {', '.join(unknown)}", path, loc)
    names = list(params)
    value_lists = []
    for name in names:
        values = params[name]
        if not isinstance(values, list) or not values:
            diag.error(
                f"matrix parameter '{name}' needs a non-empty list of values",
                f"{path}.parameters.{name}",
                loc_of(params, name) or loc,
            )
            return None
        value_lists.append(values)
    count = math.prod(len(values) for values in value_lists)
    limit = diag.budget.limits.matrix_combinations
    if count > limit:
        diag.over_limit("matrix combinations", count, limit, "matrix_combinations", path, loc)
    combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*value_lists)]
    excludes = matrix.get("exclude") or []
    if not isinstance(excludes, list):
        diag.error("matrix exclude must be a list", f"{path}.exclude", loc)
        return None
    for index, exclude in enumerate(excludes):
        if not isinstance(exclude, dict) or set(exclude) != set(names):
            diag.error(
                "each matrix exclude must give a value for every matrix parameter",
                f"{path}.exclude[{index}]",
                loc_of(excludes, index) or loc,
            )
            continue
        combos = [c for c in combos if not _same_combo(c, exclude)]
    if not combos:
        diag.error("matrix excludes every combination", path, loc)
        return None
    return combos


def _same_combo(combo: Mapping[str, Any], exclude: Mapping[str, Any]) -> bool:
    return all(enum_text(combo[k]) == enum_text(exclude[k]) for k in combo)


def matrix_name(ref: str, combo: Mapping[str, Any]) -> str:
    """``<job>-<value>-...`` with values in alphabetical order of parameter names (R-10.2)."""
    return "-".join([ref] + [enum_text(combo[k]) for k in sorted(combo)])


def build_entries(raw_entries: list[Any], wf_path: str, scope: Scope, diag: Diagnostics) -> list[Entry]:
    entries: list[Entry] = []
    for index, raw in enumerate(raw_entries):
        path = f"{wf_path}.jobs[{index}]"
        loc = loc_of(raw_entries, index)
        split = split_entry(raw, path, loc, diag)
        if split is None:
            continue
        ref, args = split
        entries.extend(expand_entry(ref, args, path, loc, scope, diag))
    return entries


def expand_entry(ref: str, args: YMap, path: str, loc: Location | None, scope: Scope, diag: Diagnostics) -> list[Entry]:
    if "matrix" not in args:
        subst = substitute(args, scope, diag, path)
        name = subst.get("name")
        explicit = isinstance(name, str) and bool(name)
        return [Entry(ref, name if explicit else ref, explicit, subst, path, loc)]
    combos = expand_matrix(args["matrix"], f"{path}.matrix", loc_of(args, "matrix") or loc, diag)
    if combos is None:
        return []
    alias = args["matrix"].get("alias", ref)
    if not isinstance(alias, str):
        diag.error("matrix alias must be a string", f"{path}.matrix.alias", loc)
        alias = ref
    without_matrix = args.derive()
    for key, value in args.items():
        if key != "matrix":
            without_matrix[key] = value
    entries = []
    for combo in combos:
        substituted = substitute(without_matrix, scope.with_matrix(combo), diag, path)
        subst = substituted.derive()
        subst.update(substituted)
        for key, value in combo.items():
            subst.setdefault(key, value)
        name = subst.get("name")
        explicit = isinstance(name, str) and bool(name)
        final = name if explicit else matrix_name(ref, combo)
        entries.append(Entry(ref, final, True, subst, path, loc, alias, combo))
    return entries


def assign_names(entries: list[Entry], wf_path: str, diag: Diagnostics) -> None:
    """Explicit (and matrix) names must be unique; repeated implicit names become
    ``job-1``, ``job-2``, ... (R-9.5)."""
    explicit: dict[str, Entry] = {}
    implicit: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.explicit_name:
            first = explicit.get(entry.name.lower())
            if first is not None:
                diag.error(
                    f"duplicate job name '{entry.name}' in workflow (first at {first.path})", entry.path, entry.loc
                )
            explicit[entry.name.lower()] = entry
        else:
            implicit.setdefault(entry.name, []).append(entry)
    for name, group in implicit.items():
        if name.lower() in explicit:
            diag.error(
                f"duplicate job name '{name}' in workflow (also given as an explicit name)", group[0].path, group[0].loc
            )
        if len(group) > 1:
            for number, entry in enumerate(group, start=1):
                entry.name = f"{name}-{number}"


def resolve_requires(
    entries: list[Entry], diag: Diagnostics, *, group: str | None = None, foreign: Mapping[str, str] | None = None
) -> None:
    """Turn each entry's ``requires`` into ``{node name: statuses}`` (R-9.4, R-10.3).

    With ``group``, ``entries`` are the jobs of that job group and may only require each other;
    ``foreign`` maps names of other groups' jobs (and group names) to their group (R-11.3).
    Outside a group, the jobs inside an expanded group cannot be required (its name can)."""
    by_name = {e.name: e for e in entries}
    renamed = {e.ref for e in entries if not e.explicit_name and e.name != e.ref}
    inside: dict[str, str] = {}
    aliases: dict[str, list[str]] = {}
    for entry in entries:
        if entry.group is not None and entry.synthetic is None:
            inside[entry.name] = entry.group
            if entry.alias is not None:
                inside.setdefault(entry.alias, entry.group)
        elif entry.alias is not None:
            aliases.setdefault(entry.alias, []).append(entry.name)
    where_label = f"job group '{group}'" if group is not None else "this workflow"
    for entry in entries:
        requires = entry.args.get("requires")
        if requires is None or entry.resolved:
            continue
        if isinstance(requires, str):
            requires = [requires]
        if not isinstance(requires, list):
            diag.error("requires must be a list", f"{entry.path}.requires", entry.loc)
            continue
        entry.requires_written = list(requires)
        for index, item in enumerate(requires):
            where = f"{entry.path}.requires[{index}]"
            loc = loc_of(requires, index) or entry.loc
            parsed = _parse_requirement(item, where, loc, diag)
            if parsed is None:
                continue
            target, statuses = parsed
            if target in inside:
                diag.error(
                    f"job '{target}' is inside job group '{inside[target]}' and cannot be "
                    f"required from outside it (require '{inside[target]}' instead)",
                    where,
                    loc,
                )
                continue
            if target in by_name:
                names = [target]
            elif target in aliases:
                names = aliases[target]
            elif group is not None and foreign and target in foreign:
                owner = foreign[target]
                what = f"job group '{target}'" if owner == target else f"job '{target}' of job group '{owner}'"
                diag.error(
                    f"{what} cannot be required from inside job group '{group}' (a job "
                    "group's jobs may only require jobs of the same group)",
                    where,
                    loc,
                )
                continue
            else:
                hint = did_you_mean(target, list(by_name) + list(aliases))
                extra = " (it is invoked more than once without 'name')" if target in renamed else ""
                diag.error(f"job '{target}' is required but is not in {where_label}{extra}{hint}", where, loc)
                continue
            for name in names:
                entry.requires[name] = statuses


def _parse_requirement(
    item: Any, where: str, loc: Location | None, diag: Diagnostics
) -> tuple[str, tuple[str, ...]] | None:
    if isinstance(item, str):
        return item, ("success",)
    if isinstance(item, dict) and len(item) == 1:
        ((target, status),) = item.items()
        statuses = status if isinstance(status, list) else [status]
        bad = [s for s in statuses if s not in _STATUSES]
        if bad or not statuses:
            shown = ", ".join(str(b) for b in bad) or "(none)"
            diag.error(f"invalid requires status {shown}; expected one of: {', '.join(sorted(_STATUSES))}", where, loc)
            return None
        expanded: list[str] = []
        for s in statuses:
            for one in ALL_STATUSES if s == "terminal" else (s,):
                if one not in expanded:
                    expanded.append(one)
        return str(target), tuple(expanded)
    diag.error("a requires item must be a job name or {job: status}", where, loc)
    return None


def find_cycle(entries: list[Entry]) -> list[str] | None:
    """A list of names forming a ``requires`` cycle, or None."""
    graph = {e.name: list(e.requires) for e in entries}
    state: dict[str, int] = {}
    for start in graph:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                trail.append(node)
            children = graph.get(node, [])
            if index < len(children):
                stack.append((node, index + 1))
                child = children[index]
                if state.get(child) == 1:
                    return trail[trail.index(child) :] + [child]
                if not state.get(child):
                    stack.append((child, 0))
            else:
                state[node] = 2
                trail.pop()
    return None


def check_serial_group(value: Any, path: str, loc: Location | None, diag: Diagnostics) -> None:
    if not isinstance(value, str) or not value.strip():
        diag.error("serial-group must be a non-empty string", path, loc)
    elif len(value) > MAX_SERIAL_GROUP:
        diag.error(f"serial-group is longer than {MAX_SERIAL_GROUP} characters", path, loc)
    elif not _SERIAL_GROUP.fullmatch(value):
        diag.error("serial-group may only contain letters, digits and . _ / -", path, loc)
