"""Environment values as the shell of a real job sees them: booleans are 1/0 (the tests registry
orbs make: `[ "$PARAM" = "1" ]`, `-eq 1`), numbers their written text, list-form environments
read; run by a real `circlet serve` and its embedded runner."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveServer
from tests.e2e.helpers import Api
from tests.pipelines.helpers import make_repo

CONFIG = """\
version: 2.1
commands:
  cached-install:
    parameters:
      pypi-cache: {type: boolean, default: true}
      venv-cache: {type: boolean, default: false}
    steps:
      - run:
          name: string comparison, as circleci/python's cache steps do
          environment:
            PARAM_PYPI_CACHE: << parameters.pypi-cache >>
            PARAM_VENV_CACHE: << parameters.venv-cache >>
          command: |
            [ "${PARAM_PYPI_CACHE}" = "1" ] || exit 11
            [ "${PARAM_VENV_CACHE}" = "0" ] || exit 12
      - run:
          name: integer comparison
          environment: [{ENABLED: << parameters.pypi-cache >>}]
          command: |
            [ "$ENABLED" -eq 1 ] || exit 13
jobs:
  check:
    docker: [{image: cimg/base:stable}]
    environment:
      - DEBUG: true
      - RATIO: 1.0
      - BIG: 123456789012345678901234567890
    steps:
      - cached-install
      - run: |
          [ "$DEBUG" = "1" ] && [ "$DEBUG" -eq 1 ] || exit 14
          [ "$RATIO" = "1.0" ] || exit 15
          [ "$BIG" = "123456789012345678901234567890" ] || exit 16
workflows:
  main:
    jobs: [check]
"""


def test_a_job_sees_booleans_as_1_and_0(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "e2e", "--user", "alice")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/e2e/app", "--repo", str(tmp_path / "repo"))
    api = Api(live_server.url, account["token"])
    pipeline = api.post("/project/gh/e2e/app/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    settled = api.settled(workflow["id"], "success", "failed", "error")
    job = api.jobs(workflow["id"])["check"]
    details = api.http.get(f"/project/gh/e2e/app/job/{job['job_number']}")
    assert settled["status"] == "success", details.text
