"""A workflow's jobs as an SVG drawn on the server: jobs as boxes coloured by status in columns by
depth (a job sits one column right of the deepest job it requires), ``requires`` as edges. Fan-out
and fan-in stay readable at 50+ jobs: a column grows downwards (the page scrolls) instead of boxes
shrinking, and within a column jobs are ordered by where their requirements sit, so edges cross less.
Pure: job bodies (the API's ``listWorkflowJobs`` items) in, markup out; every text is escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

BOX_WIDTH = 200
BOX_HEIGHT = 40
COLUMN_GAP = 56
ROW_GAP = 14
MARGIN = 12
LONGEST_LABEL = 24

# (fill, stroke, text) per status: dark text on a light fill, each pair over 7:1; the stroke carries the hue.
PALETTE = {
    "success": ("#dafbe1", "#1a7f37", "#0f3d1c"),
    "failed": ("#ffebe9", "#cf222e", "#6e0b16"),
    "infrastructure_fail": ("#ffebe9", "#cf222e", "#6e0b16"),
    "timedout": ("#ffebe9", "#cf222e", "#6e0b16"),
    "terminated-unknown": ("#ffebe9", "#cf222e", "#6e0b16"),
    "running": ("#ddf4ff", "#0969da", "#0a3069"),
    "queued": ("#ddf4ff", "#0969da", "#0a3069"),
    "on_hold": ("#fbefff", "#8250df", "#3e1f79"),
    "blocked": ("#f6f8fa", "#59636e", "#1f2328"),
}
IDLE = ("#f6f8fa", "#59636e", "#1f2328")


@dataclass(frozen=True)
class PlacedJob:
    job: dict[str, Any]
    column: int
    row: int
    # Half the rows this column has fewer than the tallest: columns are centred on each other, so a
    # fan-out's source and a fan-in's sink sit level with the middle of the fan.
    offset: float = 0.0

    @property
    def x(self) -> int:
        return MARGIN + self.column * (BOX_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> int:
        return MARGIN + round((self.row + self.offset) * (BOX_HEIGHT + ROW_GAP))


def layout(jobs: Sequence[dict[str, Any]]) -> list[PlacedJob]:
    by_id = {str(job["id"]): job for job in jobs}
    depth: dict[str, int] = {}

    def depth_of(job_id: str, seen: frozenset[str] = frozenset()) -> int:
        if job_id in depth:
            return depth[job_id]
        parents = [str(p) for p in by_id[job_id].get("dependencies", ()) if str(p) in by_id and str(p) not in seen]
        value = 1 + max((depth_of(p, seen | {job_id}) for p in parents), default=-1)
        depth[job_id] = value
        return value

    columns: dict[int, list[str]] = {}
    for job in jobs:  # the workflow's order breaks ties
        columns.setdefault(depth_of(str(job["id"])), []).append(str(job["id"]))
    row_of: dict[str, int] = {}
    for column in sorted(columns):
        members = columns[column]

        def mean_parent_row(job_id: str, members: list[str] = members) -> float:
            rows = [row_of[str(p)] for p in by_id[job_id].get("dependencies", ()) if str(p) in row_of]
            return sum(rows) / len(rows) if rows else float(members.index(job_id))

        ordered = sorted(members, key=lambda job_id: (mean_parent_row(job_id), members.index(job_id)))
        for row, job_id in enumerate(ordered):
            row_of[job_id] = row
    tallest = max((len(members) for members in columns.values()), default=0)
    return [
        PlacedJob(by_id[job_id], depth[job_id], row_of[job_id], (tallest - len(columns[depth[job_id]])) / 2)
        for job_id in by_id
    ]


def label(name: str) -> str:
    return name if len(name) <= LONGEST_LABEL else name[: LONGEST_LABEL - 1] + "…"


def render_svg(jobs: Sequence[dict[str, Any]], job_href: Callable[[dict[str, Any]], str | None]) -> Markup:
    placed = layout(jobs)
    if not placed:
        return Markup("")
    width = MARGIN * 2 + (max(p.column for p in placed) + 1) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + (max(p.row for p in placed) + 1) * (BOX_HEIGHT + ROW_GAP) - ROW_GAP
    at = {str(p.job["id"]): p for p in placed}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="group" aria-label="Jobs of the workflow">'
    ]
    for child in placed:  # edges first, under the boxes
        for parent_id in child.job.get("dependencies", ()):
            parent = at.get(str(parent_id))
            if parent is None:
                continue
            x1, y1 = parent.x + BOX_WIDTH, parent.y + BOX_HEIGHT // 2
            x2, y2 = child.x, child.y + BOX_HEIGHT // 2
            middle = (x1 + x2) // 2
            parts.append(
                f'<path class="edge" d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" '
                'fill="none" stroke="#8c959f" stroke-width="1.5"/>'
            )
    for node in placed:
        job = node.job
        status = str(job.get("status", ""))
        fill, stroke, ink = PALETTE.get(status, IDLE)
        name = str(job.get("name", ""))
        shown_status = "approval · " + status if job.get("type") == "approval" else status
        box = (
            f'<rect x="{node.x}" y="{node.y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="2"/>'
            f'<text x="{node.x + 10}" y="{node.y + 17}" fill="{ink}" font-size="13" font-weight="600">'
            f"{escape(label(name))}</text>"
            f'<text x="{node.x + 10}" y="{node.y + 33}" fill="{ink}" font-size="11">{escape(shown_status)}</text>'
        )
        title = f"<title>{escape(name)}: {escape(status)}</title>"
        href = job_href(job)
        node_attrs = f'class="job node-{escape(status)}" data-job="{escape(name)}"'
        if href:
            parts.append(f'<a href="{escape(href)}" {node_attrs}>{title}{box}</a>')
        else:
            parts.append(f"<g {node_attrs}>{title}{box}</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
