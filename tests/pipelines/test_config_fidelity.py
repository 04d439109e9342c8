"""Real configs through a real pipeline: warnings kept on the pipeline, environment forms and
CircleCI's boolean conversion in the task a runner claims, located config errors, a setup config
running two workflows that still continues only once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from circlet.db.engine import Database
from tests.conftest import Account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token
from tests.pipelines.test_trigger import pipeline_settled

LEGACY_20 = """\
version: 2
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    dependencies:
      pre: [bundle install]
    steps:
      - type: checkout
      - type: shell
        command: make
workflows:
  version: 2
  main:
    jobs: [build]
"""

ENVIRONMENTS = """\
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
          command: '[ "$ENABLED" -eq 1 ] || exit 13'
jobs:
  test:
    docker:
      - image: cimg/base:stable
      - image: postgres:16
        environment: [POSTGRES_DB=test, {POSTGRES_HOST_AUTH_METHOD: trust}]
    environment:
      - LEVEL: job
      - DEBUG: true
      - RATIO: 1.0
      - BIG: 123456789012345678901234567890
    steps:
      - cached-install
      - run:
          environment: [{STEP_ONLY: false}]
          command: |
            [ "$DEBUG" = "1" ] && [ "$DEBUG" -eq 1 ] && [ "$STEP_ONLY" = "0" ] || exit 14
            [ "$RATIO" = "1.0" ] || exit 15
            [ "$BIG" = "123456789012345678901234567890" ] || exit 16
workflows:
  main:
    jobs: [test]
"""
"""Run for real by tests/e2e/test_config_fidelity_e2e.py: each step exits non-zero unless its
shell sees the values as CircleCI gives them."""

TWO_SETUP_WORKFLOWS = """\
version: 2.1
setup: true
jobs:
  generate:
    docker: [{image: cimg/base:stable}]
    steps: [{run: echo generate}]
workflows:
  one:
    jobs: [generate]
  two:
    jobs: [generate]
"""

CONTINUED = """\
version: 2
jobs:
  continued: {docker: [{image: cimg/base:stable}], filters: {branches: {only: main}}, steps: [checkout]}
workflows:
  version: 2
  after-setup:
    jobs: [continued]
"""


async def trigger(
    client: httpx.AsyncClient, database: Database, admin: Account, repo: Path, config: str
) -> dict[str, Any]:
    make_repo(repo, {".circleci/config.yml": config})
    slug = await make_project(database, admin, repo)
    response = await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": "main"}, headers=admin.headers)
    assert response.status_code == 201, response.text
    return await pipeline_settled(client, admin, response.json()["id"])


def config_messages(pipeline: dict[str, Any]) -> list[str]:
    assert {error["type"] for error in pipeline["errors"]} <= {"config"}
    return [error["message"] for error in pipeline["errors"]]


async def test_a_20_config_runs_and_keeps_its_warnings(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    pipeline = await trigger(client, database, admin, tmp_path / "repo", LEGACY_20)
    assert pipeline["state"] == "created", pipeline
    assert config_messages(pipeline) == [
        "warning: .circleci/config.yml:5:5: jobs.build.dependencies: "
        "unknown job key 'dependencies' ignored (version 2.0 drops it)",
        "warning: .circleci/config.yml:8:9: jobs.build.steps[0]: "
        "the legacy step form '- type: checkout' is read as '- checkout'",
        "warning: .circleci/config.yml:9:9: jobs.build.steps[1]: "
        "the legacy step form '- type: shell' is read as '- run'",
    ]
    listed = (await client.get("/api/v2/pipeline", params={"org-slug": admin.org_slug}, headers=admin.headers)).json()
    assert [p["errors"] for p in listed["items"] if p["id"] == pipeline["id"]] == [pipeline["errors"]]
    task = await ProtocolRunner(client, await runner_token(database)).claim(wait=5)
    assert task is not None
    assert [(s["type"], s.get("command")) for s in task["steps"]] == [("checkout", None), ("run", "make")]


async def test_environment_lists_and_booleans_reach_the_task_as_circleci_gives_them(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    pipeline = await trigger(client, database, admin, tmp_path / "repo", ENVIRONMENTS)
    assert (pipeline["state"], pipeline["errors"]) == ("created", [])
    task = await ProtocolRunner(client, await runner_token(database)).claim(wait=5)
    assert task is not None
    assert {k: task["environment"][k] for k in ("LEVEL", "DEBUG", "RATIO", "BIG")} == {
        "LEVEL": "job",
        "DEBUG": "1",
        "RATIO": "1.0",
        "BIG": "123456789012345678901234567890",
    }
    assert [step["environment"] for step in task["steps"]] == [
        {"PARAM_PYPI_CACHE": "1", "PARAM_VENV_CACHE": "0"},
        {"ENABLED": "1"},
        {"STEP_ONLY": "0"},
    ]
    service = task["executor"]["raw"]["docker"][1]
    assert service["environment"] == {"POSTGRES_DB": "test", "POSTGRES_HOST_AUTH_METHOD": "trust"}


async def test_a_config_error_names_its_file_and_line(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    broken = ENVIRONMENTS.replace("      - LEVEL: job\n", "      - [LEVEL, job]\n")
    pipeline = await trigger(client, database, admin, tmp_path / "repo", broken)
    assert pipeline["state"] == "errored"
    assert config_messages(pipeline) == [
        ".circleci/config.yml:27:9: jobs.test.environment[0]: "
        "an environment list holds maps (- NAME: value) or NAME=value strings"
    ]


async def test_a_setup_config_running_two_workflows_runs_and_continues_once(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    pipeline = await trigger(client, database, admin, tmp_path / "repo", TWO_SETUP_WORKFLOWS)
    assert pipeline["state"] == "setup", pipeline
    assert config_messages(pipeline) == [
        "warning: .circleci/config.yml:2:1: setup: a setup config should run exactly one workflow (2 would run)"
    ]
    runner = ProtocolRunner(client, await runner_token(database))
    first, second = await runner.claim(wait=5), await runner.claim(wait=5)
    assert first is not None and second is not None
    for task in (first, second):
        event = {"name": "generate", "status": "running", "started_at": "2026-01-01T00:00:00Z"}
        assert (await runner.call(task, "steps/0", json=event)).status_code == 200
    keys = [task["environment"]["CIRCLE_CONTINUATION_KEY"] for task in (first, second)]
    bodies = [{"continuation-key": key, "configuration": CONTINUED} for key in keys]
    accepted = await client.post("/api/v2/pipeline/continue", json=bodies[0])
    assert accepted.status_code == 200, accepted.text
    refused = await client.post("/api/v2/pipeline/continue", json=bodies[1])
    assert refused.status_code == 400
    assert "already used" in refused.json()["message"]
    continued = (await client.get(f"/api/v2/pipeline/{pipeline['id']}", headers=admin.headers)).json()
    assert continued["state"] == "created"
    assert config_messages(continued) == [
        pipeline["errors"][0]["message"],
        "warning: .circleci/config.yml:3:52: jobs.continued.filters: a job-level 'filters' has no "
        "effect (filter the job in its workflow entry); ignored",
    ]
