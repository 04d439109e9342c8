"""A project's additional SSH key end to end: added through API v1.1 on a real `circlet serve`, sent
to a real `circlet runner` in the claimed task, installed by `add_ssh_keys` (named by its MD5 or its
SHA256 fingerprint, as CircleCI users write either), and never shown in the job's output or the
server's and runner's logs."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from circlet.agent.steps.ssh_keys import key_file_name
from circlet.db.engine import create_database
from circlet.settings import Settings
from tests.conftest import LiveServer, free_port, make_account, server_env
from tests.e2e.helpers import Api, start_runner
from tests.pipelines.helpers import make_project, make_repo, runner_token

HOST = "machine: true\n    resource_class: keys/host"


@dataclass
class Env:
    server: LiveServer
    api: Api
    v11: httpx.Client
    slug: str
    logs: list[Path]


@pytest.fixture(scope="module")
async def env(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("ssh-keys-e2e")
    home = root / "server-home"
    extra = {"CIRCLET_RUNNER_CONTAINER_ENGINE": "none"}
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, module_database_url, **extra))
    server.start()
    runner: subprocess.Popen[bytes] | None = None
    try:
        make_repo(root / "repo", {"README": "keys\n"})
        database = create_database(Settings(home=home, database_url=module_database_url).resolved_database_url)
        try:
            account = await make_account(database, org="keys", login="kim")
            slug = await make_project(database, account, root / "repo")
            token = await runner_token(database, "keys/host")
        finally:
            await database.dispose()
        runner = start_runner(server.url, token, "keys/host", root / "work")
        v11 = httpx.Client(base_url=server.url + "/api/v1.1", headers=account.headers, timeout=30)
        logs = [home / "server.log", root / "runner-keys-host.log"]
        yield Env(server, Api(server.url, account.token), v11, slug, logs)
    finally:
        if runner is not None:
            runner.terminate()
            runner.wait(timeout=30)
        server.stop()


def test_an_added_key_is_installed_by_either_fingerprint_and_never_shown(env: Env) -> None:
    key = rsa.generate_private_key(65537, 2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    added = env.v11.post(f"/project/{env.slug}/ssh-key", json={"hostname": "github.com", "private_key": private})
    assert added.status_code == 201, added.text
    md5, sha256 = added.json()["fingerprint"], added.json()["fingerprint_sha256"]
    listed = env.v11.get(f"/project/{env.slug}/settings").json()["ssh_keys"]
    assert [(k["hostname"], k["fingerprint"]) for k in listed] == [("github.com", md5)]

    by_md5, by_sha = key_file_name(md5), key_file_name(sha256)
    assert by_md5 == "id_rsa_" + md5.replace(":", "")
    config = f"""
version: 2.1
jobs:
  keys:
    {HOST}
    steps:
      - add_ssh_keys: {{fingerprints: ["{md5}", "{sha256}"]}}
      - run: |
          stat -c '%a %n' ~/.ssh/{by_md5} ~/.ssh/{by_sha} | sed "s|$HOME|~|"
          grep -A2 '^Host github.com' ~/.ssh/config | sed "s|$HOME|~|"
          cmp ~/.ssh/{by_md5} ~/.ssh/{by_sha} && echo same key
          cat ~/.ssh/{by_md5}
workflows: {{main: {{jobs: [keys]}}}}
"""
    pipeline = env.api.post(f"/project/{env.slug}/pipeline/run", 201, json={"config": {"content": config}})
    [workflow] = env.api.workflows(pipeline["id"])
    env.api.settled(workflow["id"], "success", "failed", "error", "canceled", "not_run")
    job = env.api.jobs(workflow["id"])["keys"]
    number = job["job_number"]
    outputs = [
        "".join(item["message"] for item in env.v11.get(f"/project/{env.slug}/{number}/output/{step}/0").json())
        for step in range(2)
    ]
    assert job["status"] == "success", outputs
    assert outputs[0] == (
        f"Added SSH key {md5} as ~/.ssh/{by_md5} for github.com\n"
        f"Added SSH key {sha256} as ~/.ssh/{by_sha} for github.com\n"
    )
    shown = outputs[1].splitlines()
    assert shown[:6] == [
        f"600 ~/.ssh/{by_md5}",
        f"600 ~/.ssh/{by_sha}",
        "Host github.com",
        *(f'  IdentityFile "~/.ssh/{name}"' for name in sorted([by_md5, by_sha])),
        "same key",
    ]
    # The key file as `cat` printed it: its BEGIN and END lines, every line between them masked.
    assert shown[6] == "-----BEGIN OPENSSH PRIVATE KEY-----" and shown[-1] == "-----END OPENSSH PRIVATE KEY-----"
    assert set(shown[7:-1]) == {"********"}

    # No line of the key, as posted or as installed, in any response, output or log.
    secret_lines = [line for line in private.splitlines()[1:-1] if len(line) >= 20]
    everything = "".join(outputs) + added.text + str(listed)
    assert all(path.is_file() for path in env.logs)
    everything += "".join(path.read_text(errors="replace") for path in env.logs)
    assert not [line for line in secret_lines if line in everything]


def test_a_key_still_installs_after_circlet_admin_rotate_key(env: Env) -> None:
    """``circlet admin rotate-key`` re-seals the project's SSH keys under a new key while the server
    runs; the server opens them at the next claim (it reloads the key file for an unknown key id)."""
    private = (
        rsa.generate_private_key(65537, 2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    added = env.v11.post(f"/project/{env.slug}/ssh-key", json={"private_key": private})
    assert added.status_code == 201, added.text
    sha256 = added.json()["fingerprint_sha256"]
    rotated = env.server.admin("rotate-key")
    assert rotated["resealed"] >= 1, rotated
    config = f"""
version: 2.1
jobs:
  keys:
    {HOST}
    steps:
      - add_ssh_keys: {{fingerprints: ["{sha256}"]}}
      - run: stat -c '%a' ~/.ssh/{key_file_name(sha256)}
workflows: {{main: {{jobs: [keys]}}}}
"""
    pipeline = env.api.post(f"/project/{env.slug}/pipeline/run", 201, json={"config": {"content": config}})
    [workflow] = env.api.workflows(pipeline["id"])
    env.api.settled(workflow["id"], "success", "failed", "error", "canceled", "not_run")
    job = env.api.jobs(workflow["id"])["keys"]
    output = env.v11.get(f"/project/{env.slug}/{job['job_number']}/output/1/0").json()
    assert job["status"] == "success", output
    assert "".join(item["message"] for item in output) == "600\n"
