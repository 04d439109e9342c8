"""Registry orbs read boolean parameters from the environment as CircleCI gives them (1/0):
circleci/python's cache steps run only when `[ "$PARAM_PYPI_CACHE" = "1" ]`."""

from __future__ import annotations

from pathlib import Path

from circlet.config import compile_config, fabricated_values

CONFIG = """\
version: 2.1
orbs:
  python: circleci/python@2.1.1
jobs:
  build:
    docker: [{image: cimg/python:3.12}]
    steps:
      - checkout
      - python/install-packages: {venv-cache: false}
workflows:
  main:
    jobs: [build]
"""


def test_python_orb_cache_steps_get_1_and_0(shared_dir: Path) -> None:
    compiled = compile_config(CONFIG, pipeline_values=fabricated_values(), orb_dirs=[shared_dir / "orbs"])
    runs = [step["run"] for step in compiled.processed["jobs"]["build"]["steps"] if "run" in step]
    gated = [run for run in runs if 'if [ "${PARAM_PYPI_CACHE}" = "1" ]' in run["command"]]
    assert gated, "the orb's cache steps test the variable against 1"
    for run in gated:
        assert run["environment"]["PARAM_PYPI_CACHE"] == "1"
        assert run["environment"]["PARAM_VENV_CACHE"] == "0"
