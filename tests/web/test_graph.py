"""The job graph's layout and markup (pure: job bodies in, SVG out)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from circlet.web.graph import BOX_HEIGHT, layout, render_svg


def job(name: str, *requires: dict[str, Any], status: str = "success", kind: str = "build") -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "name": name,
        "status": status,
        "type": kind,
        "dependencies": [r["id"] for r in requires],
        "job_number": 1,
    }


def test_a_job_sits_right_of_the_deepest_job_it_requires() -> None:
    build = job("build")
    test = job("test", build)
    lint = job("lint", build)
    deploy = job("deploy", test, lint, build)
    placed = {p.job["name"]: p for p in layout([build, test, lint, deploy])}
    assert [placed[n].column for n in ("build", "test", "lint", "deploy")] == [0, 1, 1, 2]
    assert {placed["test"].row, placed["lint"].row} == {0, 1}


def test_sixty_jobs_fan_out_and_in_without_overlap() -> None:
    root = job("root")
    middle = [job(f"shard-{i:02d}", root) for i in range(60)]
    end = job("collect", *middle)
    placed = layout([root, *middle, end])
    positions = {(p.x, p.y) for p in placed}
    assert len(positions) == 62  # no two boxes on one spot
    svg = str(render_svg([root, *middle, end], lambda j: f"/jobs/{j['name']}"))
    assert svg.count('class="edge"') == 120
    height = int(re.search(r'height="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert height >= 60 * BOX_HEIGHT  # boxes keep their size: the column grows
    # The source and the sink are level with the middle of the fan, not at its top.
    by_name = {p.job["name"]: p for p in placed}
    fan = sorted(p.y for p in placed if p.job["name"].startswith("shard-"))
    assert by_name["root"].y == by_name["collect"].y == (fan[0] + fan[-1]) // 2
    assert by_name["collect"].column == 2


def test_names_and_statuses_are_escaped_and_long_names_cut() -> None:
    evil = job('"><img src=x onerror=alert(1)>', status="failed")
    long = job("a-very-long-job-name-that-goes-on-and-on", evil, status="<b>")
    svg = str(render_svg([evil, long], lambda j: None))
    assert "<img" not in svg and "<b>" not in svg
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in svg
    assert "a-very-long-job-name-th…" in svg
    assert "<title>a-very-long-job-name-that-goes-on-and-on: &lt;b&gt;</title>" in svg


def test_approval_jobs_say_so_and_unnumbered_jobs_are_not_links() -> None:
    hold = job("hold", status="on_hold", kind="approval")
    hold.pop("job_number")
    svg = str(render_svg([hold], lambda j: f"/jobs/{j['job_number']}" if "job_number" in j else None))
    assert "approval · on_hold" in svg and "<a " not in svg and 'class="job node-on_hold"' in svg


def test_a_cycle_in_bad_data_does_not_hang() -> None:
    first = job("first")
    second = job("second", first)
    first["dependencies"] = [second["id"]]
    assert len(layout([first, second])) == 2
