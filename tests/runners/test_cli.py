"""`circlet admin runner token create` and `circlet serve`'s embedded runner, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer, free_port, server_env


def test_runner_token_create(live_server: LiveServer) -> None:
    minted = live_server.admin("runner", "token", "create", "--resource-class", "acme/linux")
    assert minted["resource_class"] == "acme/linux" and minted["token"].startswith("circlet_rt_")
    depth = httpx.get(
        live_server.url + "/api/v3/runner/tasks",
        params={"resource-class": "acme/linux"},
        headers={"Authorization": f"Bearer {minted['token']}"},
    )
    assert depth.json() == {"unclaimed_task_count": 0}
    refused = subprocess.run(
        [sys.executable, "-m", "circlet.cli", "admin", "runner", "token", "create", "--resource-class", "Bad Class"],
        env=live_server.env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "namespace/name" in json.loads(refused.stderr)["error"]


def embedded_runners(url: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"circlet.runner --url {url} "], capture_output=True, text=True)
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
