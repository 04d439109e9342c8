"""The User, Organization, Groups and Project tags of the official spec, fuzzed by schemathesis
against a real ``circlet serve``."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conformance.spec import run_schemathesis
from tests.conftest import LiveServer

TAGS = ["User", "Organization", "Groups", "Project"]


def test_account_operations_conform(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "fuzzed-org", "--user", "fuzzer")
    headers = {"Circle-Token": account["token"]}
    api = live_server.url + "/api/v2"
    org_id = account["org"]["id"]
    project = httpx.post(f"{api}/organization/gh/fuzzed-org/project", json={"name": "app"}, headers=headers).json()
    httpx.post(f"{api}/project/gh/fuzzed-org/app/envvar", json={"name": "SEEDED", "value": "v4lue"}, headers=headers)
    key = httpx.post(f"{api}/project/gh/fuzzed-org/app/checkout-key", json={"type": "deploy-key"}, headers=headers)
    group = httpx.post(f"{api}/organizations/{org_id}/groups", json={"name": "seeded"}, headers=headers).json()
    # Deleting operations get their own victims, so that the rest keep reaching real data.
    doomed_org = httpx.post(f"{api}/organization", json={"name": "doomed", "vcs_type": "github"}, headers=headers)
    httpx.post(f"{api}/organization/gh/fuzzed-org/project", json={"name": "doomed"}, headers=headers)
    entry = httpx.post(
        f"{api}/organization/{org_id}/url-orb-allow-list",
        json={"name": "seeded", "prefix": "https://example.com/orbs/", "auth": "none"},
        headers=headers,
    ).json()
    # Real identifiers, so that generated requests reach the code behind the 404s.
    config = f"""
[parameters]
"path.project-slug" = "{project["slug"]}"
"path.org-slug-or-id" = "{org_id}"
"path.org_id" = "{org_id}"
"path.group_id" = "{group["id"]}"
"path.allow-list-entry-id" = "{entry["id"]}"
"path.provider" = "gh"
"path.organization" = "fuzzed-org"
"path.project" = "app"
"path.name" = "SEEDED"
"path.fingerprint" = "{key.json()["fingerprint"]}"
"path.id" = "{account["user"]["id"]}"

[[operations]]
include-name = "DELETE /organization/{{org-slug-or-id}}"
parameters = {{ "path.org-slug-or-id" = "{doomed_org.json()["id"]}" }}

[[operations]]
include-name = "DELETE /project/{{project-slug}}"
parameters = {{ "path.project-slug" = "gh/fuzzed-org/doomed" }}
"""
    result = run_schemathesis(live_server.url, account["token"], TAGS, tmp_path, max_examples=20, config_toml=config)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
