"""``circleci tests split``: this node's share of a list of test names.

- ``name``: the names sorted, then dealt round-robin (node ``i`` gets the ``i``-th, ``i+total``-th, ...).
- ``filesize`` and ``timings``: greedy bin packing, heaviest first (ties by name), each to the node
  with the least weight so far (ties to the lowest index). The same input gives the same split on
  every node, so the shares are disjoint and cover the whole list.

Timings come from the file the agent writes from the task's ``test_timings``
(``{"filename": {...}, "classname": {...}, "testname": {...}}``, seconds). Without that file, or when
no name has a timing of the type asked for (or of any type, when autodetecting), the split falls
back to names; a name without a timing weighs ``--time-default`` (by default the mean of the known
timings of these names). Notes go to stderr.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

SplitBy = Literal["name", "filesize", "timings"]
TimingsType = Literal["filename", "classname", "testname"]
TIMINGS_TYPES: tuple[TimingsType, ...] = ("filename", "classname", "testname")

Note = Callable[[str], None]


def split_by_name(names: Sequence[str], index: int, total: int) -> list[str]:
    return sorted(names)[index::total]


def split_by_weight(weights: Mapping[str, float], index: int, total: int) -> list[str]:
    loads = [0.0] * total
    share: list[str] = []
    for name in sorted(weights, key=lambda name: (-weights[name], name)):
        node = min(range(total), key=lambda node: (loads[node], node))
        loads[node] += weights[name]
        if node == index:
            share.append(name)
    return sorted(share)


def file_sizes(names: Sequence[str], note: Note) -> dict[str, float]:
    sizes: dict[str, float] = {}
    for name in names:
        try:
            sizes[name] = float(os.stat(name).st_size)
        except OSError:
            note(f'No file size found for "{name}"; counting it as empty')
            sizes[name] = 0.0
    return sizes


def load_timings(path: Path) -> dict[str, dict[str, float]] | None:
    """The timings tables of the file, or None when there is no usable file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {
        kind: {str(name): float(seconds) for name, seconds in table.items() if isinstance(seconds, (int, float))}
        for kind, table in data.items()
        if kind in TIMINGS_TYPES and isinstance(table, dict)
    }


def choose_timings(
    timings: Mapping[str, Mapping[str, float]], names: Sequence[str], wanted: TimingsType | None, note: Note
) -> Mapping[str, float] | None:
    """The table to weigh ``names`` by: the one asked for, or the first type that knows one of them."""
    if wanted is not None:
        table = timings.get(wanted, {})
        return table if any(name in table for name in names) else None
    for kind in TIMINGS_TYPES:
        table = timings.get(kind, {})
        if any(name in table for name in names):
            note(f"Autodetected {kind} timings.")
            return table
    return None


def split_by_timings(
    names: Sequence[str],
    index: int,
    total: int,
    *,
    timings_file: Path,
    timings_type: TimingsType | None,
    time_default: float | None,
    note: Note,
) -> list[str]:
    timings = load_timings(timings_file)
    if timings is None:
        note("No timing data found for this project (no stored test results yet); splitting by name.")
        return split_by_name(names, index, total)
    table = choose_timings(timings, names, timings_type, note)
    if table is None:
        kind = f"{timings_type} " if timings_type else ""
        note(f"No {kind}timings match these names; splitting by name.")
        return split_by_name(names, index, total)
    known = [table[name] for name in names if name in table]
    default = time_default if time_default is not None else sum(known) / len(known)
    weights = {}
    for name in names:
        if name not in table:
            note(f'No timing found for "{name}"')
        weights[name] = table.get(name, default)
    return split_by_weight(weights, index, total)
