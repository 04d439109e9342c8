"""What one organization can reach, end to end: a real `circlet serve` (with its embedded runner) shared
by two organizations, real git repositories, a real `git daemon` on a private address the operator
allow-listed. The victim's project is the operator's, on a local path; everything the attacker tries
through the API is refused or fails with a clear message, and the victim's code shows up nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.helpers import Api, wait_for_port
from tests.pipelines.helpers import GIT_ENV, git, make_repo

VICTIM_CODE = "victim-code-7f3a9c"
PRIVATE_HOST = "127.0.0.2"  # a loopback address, so private; the operator allow-lists this one only
VICTIM_CONFIG = """
version: 2.1
jobs:
  build: {docker: [{image: x}], steps: [checkout, {run: grep -q victim-code secret.txt}]}
workflows: {main: {jobs: [build]}}
"""
ATTACKER_CONFIG = """
version: 2.1
jobs:
  build:
    docker: [{image: x}]
    steps: [checkout, {run: {name: submodule, command: git submodule update --init sub 2>&1}}]
workflows: {main: {jobs: [build]}}
"""


@dataclass
class Reach:
    server: LiveServer
    root: Path
    victim: Api
    victim_slug: str
    victim_repo: Path
    victim_jobs: dict[str, dict[str, Any]]
    attacker: Api
    attacker_org: str
    daemon_port: int

    def create(self, name: str, vcs_url: str) -> httpx.Response:
        return self.attacker.http.post(
            f"/organization/{self.attacker_org}/project", json={"name": name, "vcs_url": vcs_url}
        )

    def trigger(self, slug: str, api: Api | None = None) -> httpx.Response:
        return (api or self.attacker).http.post(f"/project/{slug}/pipeline", json={})

    def finished_jobs(self, api: Api, pipeline_id: str) -> dict[str, dict[str, Any]]:
        [workflow] = api.workflows(pipeline_id)
        api.settled(workflow["id"], "success", "failed", "error")
        return api.jobs(workflow["id"])

    def mirrors_of(self, project_id: str) -> list[Path]:
        return sorted((self.server.home / "mirrors" / project_id).glob("*.git"))

    def assert_no_victim_code_in_the_logs(self) -> None:
        assert self.server.log_path is not None
        assert VICTIM_CODE not in self.server.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def reach(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reach]:
    root = tmp_path_factory.mktemp("reach-e2e")
    home = root / "server-home"
    victim_repo = root / "victim"
    make_repo(victim_repo, {".circleci/config.yml": VICTIM_CONFIG, "secret.txt": VICTIM_CODE + "\n"})
    # The attacker's repository, served over git://, with a submodule that points at the victim's path.
    served = root / "served" / "attacker"
    make_repo(served, {".circleci/config.yml": ATTACKER_CONFIG})
    subprocess.run(
        [
            "git",
            "-C",
            str(served),
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            str(victim_repo),
            "sub",
        ],
        check=True,
        capture_output=True,
        env=GIT_ENV,
    )
    git(served, "commit", "-q", "-m", "a submodule")
    daemon_port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--listen={PRIVATE_HOST}",
            f"--port={daemon_port}",
            f"--base-path={root / 'served'}",
            str(root / "served"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = server_env(
        home,
        module_database_url,
        CIRCLET_RUNNER_CONTAINER_ENGINE="none",
        CIRCLET_ALLOWED_PRIVATE_NETWORKS=f"{PRIVATE_HOST}/32",
    )
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, env)
    try:
        wait_for_port(PRIVATE_HOST, daemon_port)
        server.start()
        victim = server.admin("bootstrap", "--org", "victim", "--user", "vera")
        server.admin("project", "create", "gh/victim/app", "--repo", str(victim_repo))
        mallory = server.admin("bootstrap", "--org", "mallory-first", "--user", "mallory")
        attacker = Api(server.url, mallory["token"])
        # Any signed-in user may create an organization (the default) and is its admin.
        attacker.post("/organization", 201, json={"name": "mallory", "vcs_type": "github"})
        # The victim builds once, so the server holds a mirror of its code.
        victim_api = Api(server.url, victim["token"])
        pipeline = victim_api.post("/project/gh/victim/app/pipeline", 201, json={})
        [workflow] = victim_api.workflows(pipeline["id"])
        victim_api.settled(workflow["id"], "success", "failed", "error")
        yield Reach(
            server,
            root,
            victim_api,
            "gh/victim/app",
            victim_repo,
            victim_api.jobs(workflow["id"]),
            attacker,
            "gh/mallory",
            daemon_port,
        )
    finally:
        server.stop()
        daemon.terminate()
        daemon.wait(timeout=30)


def test_the_operators_local_path_project_builds(reach: Reach) -> None:
    assert reach.victim_jobs["build"]["status"] == "success"


def test_api_projects_cannot_name_the_servers_repositories_or_mirrors(reach: Reach) -> None:
    victim = reach.victim.get(f"/project/{reach.victim_slug}")
    [mirror] = reach.mirrors_of(victim["id"])
    linked = reach.root / "innocent-looking"
    linked.symlink_to(mirror)
    attempts = {
        "other-repo": (str(reach.victim_repo), "only the operator may create such a project"),
        "other-repo-file": (f"file://{reach.victim_repo}", "only the operator may create such a project"),
        "mirror": (str(mirror), "CIRCLET_HOME"),
        "mirror-link": (str(linked), "CIRCLET_HOME"),
        "mirror-dir": (str(reach.server.home / "mirrors"), "CIRCLET_HOME"),
        "ext": ("ext::git-upload-pack%20" + str(reach.victim_repo), "the transport 'ext::' is not allowed"),
        "fd": ("fd::0", "the transport 'fd::' is not allowed"),
    }
    for name, (url, says) in attempts.items():
        response = reach.create(name, url)
        assert response.status_code == 400, (name, response.text)
        assert says in response.json()["message"], (name, response.text)
        assert VICTIM_CODE not in response.text
    reach.assert_no_victim_code_in_the_logs()


@pytest.mark.parametrize(
    ("name", "host", "says"),
    [
        ("loopback-name", "https://localhost:{server_port}/victim.git", "localhost resolves to a loopback address"),
        ("metadata", "git://169.254.169.254/latest/meta-data", "resolves to a link-local address"),
        ("loopback-git", "git://127.0.0.1:{daemon_port}/attacker", "resolves to a loopback address"),
        ("unspecified", "ssh://git@0.0.0.0/x.git", "resolves to the unspecified address"),
    ],
)
def test_fetches_of_the_servers_own_network_are_refused(reach: Reach, name: str, host: str, says: str) -> None:
    url = host.format(server_port=reach.server.url.rsplit(":", 1)[1], daemon_port=reach.daemon_port)
    created = reach.create(name, url)
    assert created.status_code == 200, created.text
    refused = reach.trigger(f"{reach.attacker_org}/{name}")
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert says in message and "this server does not connect there" in message
    if "localhost" in url:  # what a name resolves to stays the server's
        assert "127.0.0.1" not in message and "::1" not in message
    assert reach.attacker.get(f"/project/{reach.attacker_org}/{name}/pipeline")["items"] == []
    reach.assert_no_victim_code_in_the_logs()


def test_an_allow_listed_private_host_builds_and_its_submodule_is_not_followed(reach: Reach) -> None:
    slug = f"{reach.attacker_org}/served"
    created = reach.create("served", f"git://{PRIVATE_HOST}:{reach.daemon_port}/attacker")
    assert created.status_code == 200, created.text
    pipeline = reach.trigger(slug)
    assert pipeline.status_code == 201, pipeline.text
    jobs = reach.finished_jobs(reach.attacker, pipeline.json()["id"])
    number = jobs["build"]["job_number"]
    v11 = httpx.Client(base_url=reach.server.url + "/api/v1.1", headers=reach.attacker.http.headers, timeout=30)
    build = v11.get(f"/project/{slug}/{number}").json()
    assert [(s["name"], s["actions"][0]["status"]) for s in build["steps"]] == [
        ("Checkout code", "success"),
        ("submodule", "failed"),
    ]
    output = "".join(item["message"] for item in v11.get(f"/project/{slug}/{number}/output/1/0").json())
    # git's own refusal; or, for a job run as a user of its own (the runner is root), earlier still: the
    # victim's path is not there at all, its /tmp being the job's own (docs/security.md).
    assert "transport 'file' not allowed" in output or "fatal: repository" in output, output
    assert VICTIM_CODE not in output
    victim_commit = git(reach.victim_repo, "rev-parse", "HEAD")
    [mirror] = reach.mirrors_of(created.json()["id"])
    assert subprocess.run(["git", "--git-dir", str(mirror), "cat-file", "-e", victim_commit]).returncode != 0
    reach.assert_no_victim_code_in_the_logs()


def test_deleting_a_project_or_an_organization_removes_its_mirrors(reach: Reach) -> None:
    served = f"git://{PRIVATE_HOST}:{reach.daemon_port}/attacker"
    created = reach.create("short-lived", served)
    assert created.status_code == 200, created.text
    pipeline = reach.trigger(f"{reach.attacker_org}/short-lived")
    assert pipeline.status_code == 201
    assert reach.mirrors_of(created.json()["id"])
    # Settled first: a deletion racing the engine's writes deadlocks on PostgreSQL (a separate issue).
    reach.finished_jobs(reach.attacker, pipeline.json()["id"])
    deleted = reach.attacker.http.delete(f"/project/{reach.attacker_org}/short-lived")
    assert deleted.status_code == 200, deleted.text
    assert not (reach.server.home / "mirrors" / created.json()["id"]).exists()
    reach.attacker.post("/organization", 201, json={"name": "mallory-tmp", "vcs_type": "github"})
    in_org = reach.attacker.post("/organization/gh/mallory-tmp/project", 200, json={"name": "a", "vcs_url": served})
    pipeline = reach.trigger("gh/mallory-tmp/a")
    assert pipeline.status_code == 201
    assert reach.mirrors_of(in_org["id"])
    reach.finished_jobs(reach.attacker, pipeline.json()["id"])
    assert reach.attacker.http.delete("/organization/gh/mallory-tmp").status_code == 202
    assert not (reach.server.home / "mirrors" / in_org["id"]).exists()
    victim = reach.victim.get(f"/project/{reach.victim_slug}")
    assert reach.mirrors_of(victim["id"]), "another organization's mirror stays"
