"""`circlet admin project hooks` and `poll`, run as an operator runs them, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import LiveServer
from tests.hooks.helpers import ZERO, github_push, signed
from tests.pipelines.helpers import make_repo
from tests.pipelines.test_trigger import CONFIG


def admin(server: LiveServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "circlet.cli", "admin", *args],
        env={**server.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hooks_prints_urls_and_a_secret_the_server_verifies(live_server: LiveServer, tmp_path: Path) -> None:
    sha = make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    account = live_server.admin("bootstrap", "--org", "acme", "--user", "alice")
    live_server.admin("project", "create", "gh/acme/app", "--repo", str(tmp_path / "repo"))
    public = {"CIRCLET_PUBLIC_URL": "https://ci.example.com"}
    done = admin(live_server, "project", "hooks", "gh/acme/app", **public)
    assert done.returncode == 0, done.stderr
    hooks: dict[str, Any] = json.loads(done.stdout)
    assert set(hooks) == {"github", "gitlab", "gitea"}
    project_id = httpx.get(
        live_server.url + "/api/v2/project/gh/acme/app", headers={"Circle-Token": account["token"]}
    ).json()["id"]
    for forge, hook in hooks.items():
        assert hook["url"] == f"https://ci.example.com/hooks/{forge}/{project_id}"
        assert hook["secret"] == hooks["github"]["secret"] and len(hook["secret"]) >= 32
    again = json.loads(admin(live_server, "project", "hooks", "gh/acme/app", **public).stdout)
    assert again == hooks  # the same secret until rotated

    path = urlsplit(hooks["github"]["url"]).path
    delivery = signed("github", github_push("refs/heads/main", ZERO, sha), hooks["github"]["secret"], "push")
    response = httpx.post(live_server.url + path, **delivery)
    assert response.status_code == 201, response.text

    rotated = json.loads(admin(live_server, "project", "hooks", "gh/acme/app", "--rotate").stdout)
    assert rotated["github"]["secret"] != hooks["github"]["secret"]
    stale = signed("github", github_push("refs/heads/main", ZERO, sha), hooks["github"]["secret"], "push")
    assert httpx.post(live_server.url + path, **stale).status_code == 401

    polled = admin(live_server, "project", "poll", "gh/acme/app", "--every", "30s")
    assert polled.returncode == 0, polled.stderr
    assert json.loads(polled.stdout) == {"project_id": project_id, "poll_every_seconds": 30}
    off = json.loads(admin(live_server, "project", "poll", "gh/acme/app", "--off").stdout)
    assert off["poll_every_seconds"] is None

    unknown = admin(live_server, "project", "hooks", "gh/acme/nope")
    assert unknown.returncode == 1 and "no project" in json.loads(unknown.stderr)["error"]
    too_often = admin(live_server, "project", "poll", "gh/acme/app", "--every", "1s")
    assert too_often.returncode == 1 and "at least 10 seconds" in json.loads(too_often.stderr)["error"]
