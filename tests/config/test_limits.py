"""The compiler's expansion limits: each refused before the work it bounds, with an error that
names the limit (its setting) and the line."""

from __future__ import annotations

import time

import pytest

from circlet.config import DEFAULT_LIMITS, ConfigInvalid, ExpansionLimits, compile_config


def matrix(a: int, b: int) -> str:
    return f"""version: 2.1
jobs:
  build:
    docker: [{{image: x}}]
    parameters: {{a: {{type: integer}}, b: {{type: integer}}}}
    steps: [{{run: echo << parameters.a >>}}]
workflows:
  w:
    jobs:
      - build:
          matrix:
            parameters: {{a: [{", ".join(map(str, range(a)))}], b: [{", ".join(map(str, range(b)))}]}}
"""


def refused(source: str, limits: ExpansionLimits = DEFAULT_LIMITS) -> str:
    with pytest.raises(ConfigInvalid) as caught:
        compile_config(source, filename="c.yml", orb_dirs=[], limits=limits)
    return "\n".join(error.format() for error in caught.value.errors)


def test_a_million_combinations_are_counted_not_built() -> None:
    started = time.perf_counter()
    message = refused(matrix(1000, 1000))
    assert time.perf_counter() - started < 1.0
    assert message == (
        "c.yml:11:11: workflows.w.jobs[0].matrix: matrix combinations (1000000) exceeds the limit of 1000 "
        "(matrix_combinations)"
    )
    compile_config(matrix(40, 25), orb_dirs=[])  # exactly the limit


def test_jobs_per_workflow_and_per_pipeline() -> None:
    entries = "\n".join(f"      - build: {{name: b{n}}}" for n in range(11))
    source = f"""version: 2.1
jobs:
  build: {{docker: [{{image: x}}], steps: [{{run: x}}]}}
workflows:
  one:
    jobs:
{entries}
  two:
    jobs: [build]
"""
    assert (
        "c.yml:17:9: workflows.one.jobs[10]: jobs in a workflow (11) exceeds the limit of 10 (jobs_per_workflow)"
        in (refused(source, ExpansionLimits(jobs_per_workflow=10)))
    )
    assert "workflows.two.jobs[0]: jobs in a pipeline (12) exceeds the limit of 11 (jobs_per_pipeline)" in refused(
        source, ExpansionLimits(jobs_per_pipeline=11)
    )
    compile_config(source, orb_dirs=[], limits=ExpansionLimits(jobs_per_workflow=11, jobs_per_pipeline=12))


def chain(depth: int, fan_out: int = 1) -> str:
    commands = [f"  c{n}:\n    steps: [{', '.join([f'c{n + 1}'] * fan_out)}]" for n in range(depth)]
    commands.append(f"  c{depth}:\n    steps: [{{run: echo leaf}}]")
    return (
        "version: 2.1\ncommands:\n"
        + "\n".join(commands)
        + "\njobs:\n  build: {docker: [{image: x}], steps: [c0]}\nworkflows:\n  w:\n    jobs: [build]\n"
    )


def test_commands_nested_past_the_depth() -> None:
    message = refused(chain(60))
    assert "commands nested in commands (51) exceeds the limit of 50 (nesting_depth)" in message
    assert message.startswith("c.yml:")
    compile_config(chain(49), orb_dirs=[])


def test_steps_multiplied_by_commands_stop_at_the_budget() -> None:
    started = time.perf_counter()
    message = refused(chain(40, fan_out=2))  # 2**40 steps
    assert time.perf_counter() - started < 20.0  # 2**40 would be never
    assert "steps in a pipeline (100001) exceeds the limit of 100000 (steps_per_pipeline)" in message


def test_orbs_nested_past_the_depth() -> None:
    inner = "{jobs: {j: {docker: [{image: x}], steps: [{run: x}]}}}"
    for _ in range(5):
        inner = f"{{orbs: {{o: {inner}}}}}"
    source = f"version: 2.1\norbs:\n  top: {inner}\njobs:\n  build: {{docker: [{{image: x}}], steps: [{{run: x}}]}}\n"
    source += "workflows:\n  w:\n    jobs: [build]\n"
    assert "orbs nested in orbs (4) exceeds the limit of 3 (nesting_depth)" in refused(
        source, ExpansionLimits(nesting_depth=3)
    )
    compile_config(source, orb_dirs=[], limits=ExpansionLimits(nesting_depth=6))


def test_compiled_size() -> None:
    source = chain(0).replace("echo leaf", "echo " + "x" * 2000)
    compiled = compile_config(source, orb_dirs=[])
    with pytest.raises(ConfigInvalid) as caught:
        compiled.to_yaml_within(ExpansionLimits(compiled_config_bytes=1000), "c.yml")
    [error] = caught.value.errors
    assert error.format().startswith("c.yml:1:1: compiled config size in bytes (")
    assert error.format().endswith("exceeds the limit of 1000 (compiled_config_bytes)")
    assert compiled.to_yaml_within(ExpansionLimits(), "c.yml") == compiled.to_yaml()
