"""Fixture cases, one folder per rule of SEMANTICS.md under ``cases/``.

Each folder holds ``config.yml`` and optionally ``params.json`` (``parameters``, ``values``,
``branch``, ``tag``), ``orbs/`` (a local orb registry), and the expectations:
``expected.yml`` (exact processed config, without the commented original), ``errors.txt``
(exact error lines, the case folder written as ``<case>``), ``warnings.txt`` (exact warning
lines of a config that compiles; without it, the config must compile without warnings) and
``graph.yml`` (workflow graph summary for ``branch``/``tag``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from circlet.config import CompiledConfig, ConfigInvalid, WorkflowGraph, compile_config

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
MARKER = "# Original config.yml file:"


def compile_case(case: Path, source: str | None = None) -> CompiledConfig:
    """Compile the case's config (or ``source``: a processed config, which takes no parameters)."""
    params_file = case / "params.json"
    params: dict[str, Any] = json.loads(params_file.read_text()) if params_file.exists() else {}
    if source is not None:
        params.pop("parameters", None)
    orbs = case / "orbs"
    return compile_config(
        source if source is not None else (case / "config.yml").read_text(),
        filename="config.yml",
        pipeline_parameters=params.get("parameters"),
        pipeline_values=params.get("values"),
        orb_dirs=[orbs] if orbs.is_dir() else [],
    )


def graph_summary(workflows: list[WorkflowGraph]) -> dict[str, Any]:
    return {
        wf.name: {
            node.name: {
                "type": node.type,
                "requires": {name: list(statuses) for name, statuses in node.requires.items()},
                "context": list(node.context),
            }
            for node in wf.jobs
        }
        for wf in workflows
    }


def processed_part(text: str) -> str:
    return text[: text.index(MARKER)].rstrip("\n") + "\n"


def test_there_are_cases_for_every_section() -> None:
    sections = {p.name.split("-")[0].split(".")[0] for p in CASES}
    assert {f"r{n}" for n in range(0, 16)} <= sections


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_case(case: Path) -> None:
    errors_file = case / "errors.txt"
    try:
        compiled = compile_case(case)
    except ConfigInvalid as exc:
        got = [e.format().replace(str(case), "<case>") for e in exc.errors]
        assert errors_file.exists(), "unexpected errors:\n" + "\n".join(got)
        assert got == errors_file.read_text().splitlines()
        return
    assert not errors_file.exists(), "expected errors, but the config compiled"
    warnings_file = case / "warnings.txt"
    expected_warnings = warnings_file.read_text().splitlines() if warnings_file.exists() else []
    assert [w.format().replace(str(case), "<case>") for w in compiled.warnings] == expected_warnings
    output = compiled.to_yaml()
    expected_file = case / "expected.yml"
    graph_file = case / "graph.yml"
    assert expected_file.exists() or graph_file.exists()
    if expected_file.exists():
        assert processed_part(output) == expected_file.read_text()
    if graph_file.exists():
        params_file = case / "params.json"
        params = json.loads(params_file.read_text()) if params_file.exists() else {}
        graph = compiled.graph_for(params.get("branch"), params.get("tag"))
        assert graph_summary(graph) == yaml.safe_load(graph_file.read_text())
    again = compile_case(case, output).to_yaml()
    assert again == output, "processing the output again must give the same output"
