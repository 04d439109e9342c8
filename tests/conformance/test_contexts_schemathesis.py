"""The Context and User tags of the official spec, fuzzed by schemathesis against a real server."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conformance.spec import run_schemathesis
from tests.conftest import LiveServer


def test_context_and_user_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "conformance", "--user", "fuzzer")
    headers = {"Circle-Token": account["token"]}
    api = live_server.url + "/api/v2"
    context = httpx.post(
        f"{api}/context", json={"name": "seeded", "owner": {"id": account["org"]["id"]}}, headers=headers
    ).json()
    httpx.put(f"{api}/context/{context['id']}/environment-variable/SEEDED", json={"value": "v4lue"}, headers=headers)
    # Real identifiers, so that generated requests reach the code behind the 404s.
    config = f"""
[parameters]
"path.context_id" = "{context["id"]}"
"path.id" = "{account["user"]["id"]}"
"query.owner-id" = "{account["org"]["id"]}"
"""
    result = run_schemathesis(
        live_server.url, account["token"], ["Context", "User"], tmp_path, max_examples=30, config_toml=config
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
