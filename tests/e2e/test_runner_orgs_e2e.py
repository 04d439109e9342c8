"""Runners belong to organizations, end to end (issue 20): a real `circlet serve` (its embedded
runner serves the shared class `local`), two organizations with a real `circlet runner` each, classes
and tokens made through CircleCI's runner API as its CLI calls it, and every combination of class
and owner run as real jobs. Then a token revoked while its runner runs a job: the job finishes,
and the runner claims nothing more and exits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import create_database
from circlet.settings import Settings
from tests.conftest import Account, LiveServer, free_port, make_account, server_env
from tests.e2e.helpers import Api, start_runner
from tests.pipelines.helpers import make_project, make_repo


@dataclass
class Org:
    account: Account
    api: Api
    runner_api: httpx.Client
    slug: str


@dataclass
class Env:
    server: LiveServer
    root: Path
    acme: Org
    rival: Org


def job(name: str, resource_class: str, command: str = "echo ran on $CIRCLE_PROJECT_USERNAME") -> str:
    return f"  {name}:\n    machine: true\n    resource_class: {resource_class}\n    steps: [{{run: '{command}'}}]\n"


def config(*jobs: str) -> str:
    names = ", ".join(text.split(":", 1)[0].strip() for text in jobs)
    return f"version: 2.1\njobs:\n{''.join(jobs)}workflows:\n  main:\n    jobs: [{names}]\n"


@pytest.fixture(scope="module")
async def env(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("runner-orgs")
    home = root / "server-home"
    extra = {"CIRCLET_RUNNER_CONTAINER_ENGINE": "none"}
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, module_database_url, **extra))
    server.start()
    try:
        make_repo(root / "repo", {".circleci/config.yml": "version: 2.1\n"})
        database = create_database(Settings(home=home, database_url=module_database_url).resolved_database_url)
        try:
            orgs = {}
            for name in ("acme", "rival"):
                account = await make_account(database, org=name)
                orgs[name] = (account, await make_project(database, account, root / "repo"))
        finally:
            await database.dispose()
        made = {
            name: Org(
                account,
                Api(server.url, account.token),
                httpx.Client(base_url=server.url + "/api/v3", headers={"Circle-Token": account.token}, timeout=30),
                slug,
            )
            for name, (account, slug) in orgs.items()
        }
        yield Env(server, root, made["acme"], made["rival"])
    finally:
        server.stop()


def create_class_and_token(org: Org, resource_class: str) -> dict[str, Any]:
    """`circleci runner resource-class create` then `circleci runner token create`."""
    created = org.runner_api.post("/runner/resource", json={"resource_class": resource_class, "description": "e2e"})
    assert created.status_code == 201, created.text
    minted = org.runner_api.post("/runner/token", json={"resource_class": resource_class, "nickname": "e2e"})
    assert minted.status_code == 201, minted.text
    return minted.json()  # type: ignore[no-any-return]


def run(org: Org, text: str, *statuses: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Runs the config inline; its jobs by name once the workflow has one of ``statuses``."""
    body = {"config": {"content": text}, "checkout": {"branch": "main"}}
    pipeline = org.api.post(f"/project/{org.slug}/pipeline/run", 201, json=body)
    [workflow] = org.api.workflows(pipeline["id"])
    settled = org.api.settled(workflow["id"], *statuses)
    return org.api.jobs(workflow["id"]), settled


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def test_two_organizations_with_a_runner_each(env: Env) -> None:
    acme_token = create_class_and_token(env.acme, "acme/host")
    rival_token = create_class_and_token(env.rival, "rival/host")
    runners = [
        start_runner(env.server.url, acme_token["token"], "acme/host", env.root / "acme-work", "--name", "acme-box"),
        start_runner(
            env.server.url, rival_token["token"], "rival/host", env.root / "rival-work", "--name", "rival-box"
        ),
    ]
    try:
        jobs, workflow = run(
            env.acme,
            config(
                job("own", "acme/host"), job("theirs", "rival/host"), job("shared", "local"), job("unknown", "acme/gpu")
            ),
            "failed",
        )
        assert {name: j["status"] for name, j in jobs.items()} == {
            "own": "success", "theirs": "failed", "shared": "success", "unknown": "failed",
        }  # fmt: skip
        borrowed, _ = run(env.rival, config(job("borrowed", "acme/host"), job("own", "rival/host")), "failed")
        assert {name: j["status"] for name, j in borrowed.items()} == {"borrowed": "failed", "own": "success"}
        refused = env.rival.api.get(f"/project/{env.rival.slug}/job/{borrowed['borrowed']['job_number']}")
        assert "acme/host is not a resource class of organization rival" in refused["messages"][0]["message"]

        # Each organization sees its own runner, as the runner reported itself.
        for org, name in ((env.acme, "acme-box"), (env.rival, "rival-box")):
            [instance] = org.runner_api.get("/runner", params={"namespace": org.account.org_slug[3:]}).json()["items"]
            assert instance["name"] == name and instance["version"] and instance["last_used"]
        assert env.rival.runner_api.get("/runner", params={"resource-class": "acme/host"}).status_code == 404
    finally:
        for process in runners:
            stop(process)


def test_a_token_revoked_while_its_runner_runs_a_job(env: Env, shared_with_jobs: Path) -> None:
    minted = create_class_and_token(env.acme, "acme/revoked")
    marker = shared_with_jobs / "started"  # where the job's user sees it
    runner = start_runner(
        env.server.url, minted["token"], "acme/revoked", env.root / "revoked-work", "--max-tasks", "2"
    )
    try:
        slow = job("slow", "acme/revoked", f"touch {marker}; sleep 3; echo finished")
        body = {"config": {"content": config(slow)}, "checkout": {"branch": "main"}}
        pipeline = env.acme.api.post(f"/project/{env.acme.slug}/pipeline/run", 201, json=body)
        [workflow] = env.acme.api.workflows(pipeline["id"])
        env.acme.api.until(marker.exists)
        revoked = env.acme.runner_api.delete(f"/runner/token/{minted['id']}")
        assert revoked.status_code == 200
        # The job runs to its end; the runner claims nothing more and exits (2: its token was refused).
        settled = env.acme.api.settled(workflow["id"], "success", "failed")
        assert settled["status"] == "success"
        deadline = time.monotonic() + 45
        while runner.poll() is None:
            assert time.monotonic() < deadline, "the runner outlived its token"
            time.sleep(0.2)
        assert runner.returncode != 0
        assert env.acme.runner_api.get("/runner/token", params={"resource-class": "acme/revoked"}).json() == {
            "items": []
        }
    finally:
        stop(runner)
