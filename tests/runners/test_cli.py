"""`circlet admin runner token create` and `circlet serve`'s embedded runner, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, free_port, server_env


def admin_lines(server: LiveServer, *args: str) -> list[dict[str, Any]]:
    """A `circlet admin` listing: one JSON object a line."""
    done = subprocess.run(
        [sys.executable, "-m", "circlet.cli", "admin", *args],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def admin_error(server: LiveServer, *args: str) -> str:
    refused = subprocess.run(
        [sys.executable, "-m", "circlet.cli", "admin", *args], env=server.env, capture_output=True, text=True
    )
    assert refused.returncode == 1, refused.stdout
    return str(json.loads(refused.stderr)["error"])


def test_resource_class_create_then_token_create_list_and_revoke(live_server: LiveServer) -> None:
    live_server.admin("bootstrap", "--org", "acme", "--user", "alice")
    created = live_server.admin("runner", "resource-class", "create", "acme/linux", "--org", "acme")
    assert created["resource_class"] == "acme/linux" and created["org"] == "gh/acme"
    assert "namespace/name" in admin_error(
        live_server, "runner", "resource-class", "create", "Bad Class", "--org", "acme"
    )
    assert "namespace of organization acme" in admin_error(
        live_server, "runner", "resource-class", "create", "rival/linux", "--org", "acme"
    )
    # A token only for a class that exists.
    assert "not found" in admin_error(live_server, "runner", "token", "create", "--resource-class", "acme/other")
    minted = live_server.admin("runner", "token", "create", "--resource-class", "acme/linux", "--nickname", "rack-1")
    assert minted["resource_class"] == "acme/linux" and minted["token"].startswith("circlet_rt_")
    depth = httpx.get(
        live_server.url + "/api/v3/runner/tasks",
        params={"resource-class": "acme/linux"},
        headers={"Authorization": f"Bearer {minted['token']}"},
    )
    assert depth.json() == {"unclaimed_task_count": 0}

    [listed] = admin_lines(live_server, "runner", "token", "list", "--org", "acme")
    assert listed["id"] == minted["id"] and listed["nickname"] == "rack-1"
    assert minted["token"] not in json.dumps(listed) and "token" not in listed

    assert live_server.admin("runner", "token", "revoke", minted["id"]) == {"id": minted["id"], "revoked": True}
    depth = httpx.get(
        live_server.url + "/api/v3/runner/tasks",
        params={"resource-class": "acme/linux"},
        headers={"Authorization": f"Bearer {minted['token']}"},
    )
    assert depth.status_code == 401
    assert admin_lines(live_server, "runner", "token", "list", "--org", "acme") == []
    events = admin_lines(live_server, "audit")
    actions = [event["action"] for event in events if event["details"].get("resource_class") == "acme/linux"]
    assert actions == ["runner.resource_class.create", "runner.token.create", "runner.token.revoke"]


def embedded_runners(url: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"circlet.agent --url {url} "], capture_output=True, text=True)
    return found.stdout.split()


def test_serve_starts_and_stops_its_embedded_runner(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    server.start()
    try:
        deadline = time.monotonic() + 20
        while not embedded_runners(server.url):
            assert time.monotonic() < deadline, "no embedded runner"
            time.sleep(0.1)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while embedded_runners(server.url):
        assert time.monotonic() < deadline, "the embedded runner outlived the server"
        time.sleep(0.1)


def test_serve_no_runner(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = server_env(home, database_url)
    server = subprocess.Popen(
        [sys.executable, "-m", "circlet.cli", "serve", "--port", str(port), "--no-runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        assert embedded_runners(url) == []
    finally:
        server.terminate()
        server.wait(timeout=30)
