"""`pipeline/run` (definitions, config and checkout refs, inline config), pipeline definitions and
triggers, and the pipeline listings."""

from __future__ import annotations

from pathlib import Path

import httpx

from circlet.db.engine import Database
from tests.conftest import Account, make_account
from tests.pipelines.helpers import commit, git, make_project, make_repo
from tests.pipelines.test_trigger import CONFIG, pipeline_settled

INLINE = """
version: 2.1
jobs:
  inline: {docker: [{image: x}], steps: [{run: echo inline}]}
workflows:
  w:
    jobs: [inline]
"""


async def test_pipeline_run_with_definitions_refs_and_inline_config(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG, ".circleci/other.yml": INLINE})
    git(repo, "checkout", "-q", "-b", "feature")
    feature = commit(repo, {"file": "x"})
    slug = await make_project(database, admin, repo)
    project_id = (await client.get(f"/api/v2/project/{slug}", headers=admin.headers)).json()["id"]
    base = f"/api/v2/projects/{project_id}/pipeline-definitions"

    [default] = (await client.get(base, headers=admin.headers)).json()["items"]
    assert default["config_source"]["file_path"] == ".circleci/config.yml"
    created = await client.post(
        base,
        json={"name": "other", "config_source": {"provider": "circleci", "file_path": ".circleci/other.yml"}},
        headers=admin.headers,
    )
    assert created.status_code == 200, created.text
    other = created.json()
    assert [d["name"] for d in (await client.get(base, headers=admin.headers)).json()["items"]] == ["default", "other"]

    run = f"/api/v2/project/{slug}/pipeline/run"
    response = await client.post(
        run,
        json={"definition_id": other["id"], "checkout": {"branch": "feature"}, "config": {"branch": "main"}},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = await pipeline_settled(client, admin, response.json()["id"])
    assert body["state"] == "created" and body["vcs"]["revision"] == feature and body["vcs"]["branch"] == "feature"
    config = (await client.get(f"/api/v2/pipeline/{body['id']}/config", headers=admin.headers)).json()
    assert config["source"] == INLINE

    inline = await client.post(
        run, json={"config": {"content": INLINE.replace("inline", "given")}}, headers=admin.headers
    )
    assert inline.status_code == 201
    body = await pipeline_settled(client, admin, inline.json()["id"])
    workflows = (await client.get(f"/api/v2/pipeline/{body['id']}/workflow", headers=admin.headers)).json()
    jobs = (await client.get(f"/api/v2/workflow/{workflows['items'][0]['id']}/job", headers=admin.headers)).json()
    assert [j["name"] for j in jobs["items"]] == ["given"]

    for bad in ({"definition_id": "nope"}, {"config": {"branch": "x", "tag": "y"}}, {"unknown": 1}):
        assert (await client.post(run, json=bad, headers=admin.headers)).status_code == 400
    missing = await client.post(
        run, json={"definition_id": "00000000-0000-0000-0000-000000000001"}, headers=admin.headers
    )
    assert missing.status_code == 404

    patched = await client.patch(f"{base}/{other['id']}", json={"description": "d"}, headers=admin.headers)
    assert patched.json()["description"] == "d"
    triggers = f"{base}/{other['id']}/triggers"
    trigger = await client.post(
        triggers,
        json={"event_name": "t", "event_source": {"provider": "webhook", "webhook": {"sender": "ci"}}},
        headers=admin.headers,
    )
    assert trigger.status_code == 200, trigger.text
    trigger_url = f"/api/v2/projects/{project_id}/triggers/{trigger.json()['id']}"
    assert (await client.get(trigger_url, headers=admin.headers)).json()["event_name"] == "t"
    assert (await client.patch(trigger_url, json={"disabled": True}, headers=admin.headers)).json()["disabled"]
    assert [t["event_name"] for t in (await client.get(triggers, headers=admin.headers)).json()["items"]] == ["t"]
    deleted = await client.delete(trigger_url, headers=admin.headers)
    assert deleted.json() == {"message": "Trigger deleted."}
    assert (await client.get(trigger_url, headers=admin.headers)).status_code == 404
    assert (await client.delete(f"{base}/{other['id']}", headers=admin.headers)).status_code == 200
    assert (await client.get(f"{base}/{other['id']}", headers=admin.headers)).status_code == 404


async def test_listings_and_visibility(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    git(repo, "checkout", "-q", "-b", "feature")
    slug = await make_project(database, admin, repo)
    colleague = await make_account(database, org=admin.org_slug.split("/")[1], role="member")
    outsider = await make_account(database)
    ids = []
    for who, branch in ((admin, "main"), (colleague, "feature"), (admin, "feature")):
        response = await client.post(f"/api/v2/project/{slug}/pipeline", json={"branch": branch}, headers=who.headers)
        ids.append(response.json()["id"])
    listed = (
        await client.get(f"/api/v2/project/{slug}/pipeline", params={"branch": "feature"}, headers=admin.headers)
    ).json()
    assert [p["id"] for p in listed["items"]] == [ids[2], ids[1]]
    mine = (await client.get(f"/api/v2/project/{slug}/pipeline/mine", headers=colleague.headers)).json()
    assert [p["id"] for p in mine["items"]] == [ids[1]] and mine["items"][0]["trigger"]["actor"]["login"]
    org = (await client.get("/api/v2/pipeline", params={"org-slug": admin.org_slug}, headers=admin.headers)).json()
    assert [p["id"] for p in org["items"]] == ids[::-1]
    assert (await client.get(f"/api/v2/pipeline/{ids[0]}", headers=outsider.headers)).status_code == 404
    assert (await client.get(f"/api/v2/project/{slug}/pipeline", headers=outsider.headers)).status_code == 404
    bad = await client.get(f"/api/v2/project/{slug}/pipeline", params={"page-token": "junk"}, headers=admin.headers)
    assert bad.status_code == 400
