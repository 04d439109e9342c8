"""The official CircleCI MCP server's ``find_flaky_tests`` tool, run over stdio as a real client
against a live circlet: a test that passed and failed on one commit comes back with its test result.

The server is the npm package ``@circleci/mcp-server-circleci`` (a test-only dependency, installed
into a cache folder on first use); without ``npm`` the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.pipelines.helpers import make_repo

MCP_PACKAGE = "@circleci/mcp-server-circleci@0.20.0"
CACHE = Path(os.environ.get("CIRCLET_MCP_CACHE", Path.home() / ".cache" / "circlet-test-mcp"))
CONFIG = """
version: 2.1
jobs:
  unit: {machine: true, resource_class: flaky/tester, steps: [{run: echo test}]}
workflows:
  tests:
    jobs: [unit]
"""


def junit(result: str) -> bytes:
    failure = '<failure message="boom">AssertionError: boom</failure>' if result == "failure" else ""
    return (
        '<testsuite name="s"><testcase classname="app.models" name="test_save" file="app/models.py" time="1.5">'
        f"{failure}</testcase></testsuite>"
    ).encode()


def mcp_server() -> Path:
    entry = CACHE / "node_modules" / "@circleci" / "mcp-server-circleci" / "dist" / "index.js"
    if not entry.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed")
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--silent", MCP_PACKAGE],
            check=True,
            timeout=300,
        )
    return entry


def run_job(runner: httpx.Client, api: httpx.Client, result: str) -> None:
    api.post("/project/gh/flaky/app/pipeline", json={"branch": "main"}).raise_for_status()
    deadline = time.monotonic() + 30
    task = None
    while task is None:
        assert time.monotonic() < deadline
        claimed = runner.post(
            "/claim", json={"resource_class": "flaky/tester", "runner_name": "mcp", "wait_seconds": 1}
        )
        task = claimed.json() if claimed.status_code == 200 else None
    headers = {"Authorization": f"Bearer {task['task_token']}"}
    base = f"/tasks/{task['task_id']}"
    runner.put(f"{base}/tests", params={"source": "pytest"}, content=junit(result), headers=headers).raise_for_status()
    runner.post(f"{base}/complete", json={"status": "success"}, headers=headers).raise_for_status()


def call_tool(entry: Path, base_url: str, token: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """initialize, initialized, tools/call: newline-delimited JSON-RPC over the server's stdio."""
    env = {**os.environ, "CIRCLECI_TOKEN": token, "CIRCLECI_BASE_URL": base_url}
    env.pop("FILE_OUTPUT_DIRECTORY", None)
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2024-11-05",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "find_flaky_tests", "arguments": arguments},
        },
    ]
    process = subprocess.Popen(
        ["node", str(entry)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for message in messages:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            answer = json.loads(line)
            if answer.get("id") == 2:
                return dict(answer)
        raise AssertionError("no answer to tools/call")
    finally:
        process.kill()
        process.wait()


def test_find_flaky_tests_through_the_official_mcp_server(live_server: LiveServer, tmp_path: Path) -> None:
    entry = mcp_server()
    account = live_server.admin("bootstrap", "--org", "flaky", "--user", "developer")
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    live_server.admin("project", "create", "gh/flaky/app", "--repo", str(tmp_path / "repo"))
    live_server.admin("runner", "resource-class", "create", "flaky/tester", "--org", "flaky")
    minted = live_server.admin("runner", "token", "create", "--resource-class", "flaky/tester")
    api = httpx.Client(base_url=live_server.url + "/api/v2", headers={"Circle-Token": account["token"]})
    runner = httpx.Client(
        base_url=live_server.url + "/api/v3/runner", headers={"Authorization": f"Bearer {minted['token']}"}
    )
    run_job(runner, api, "success")
    run_job(runner, api, "failure")  # the same commit: a flake
    flaky = api.get("/insights/gh/flaky/app/flaky-tests").json()
    assert flaky["total_flaky_tests"] == 1 and flaky["flaky_tests"][0]["job_number"] == 2

    answer = call_tool(entry, live_server.url, account["token"], {"params": {"projectSlug": "gh/flaky/app"}})
    assert "error" not in answer, answer
    text = "\n".join(part.get("text", "") for part in answer["result"]["content"])
    assert "Test name: test_save" in text and "Classname: app.models" in text, text
    assert "File Name: app/models.py" in text and "Result: failure" in text, text
