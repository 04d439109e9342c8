"""Custom webhook triggers (the spec's `webhook` provider): the secret URL, its pipelines, refusals
and rate limit, and the secrets sealed at rest."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from circlet.db.engine import Database
from circlet.hooks.service import hook_secret, reseal_hook_secrets
from circlet.secrets.keyring import drop_previous_keys, load_keyring, rotate_key_file
from circlet.settings import Settings
from tests.conftest import Account, app_client, postgres_dump, raw_sqlite_bytes
from tests.hooks.helpers import hooked_project, pipelines_of, values_of
from tests.pipelines.helpers import commit, make_repo
from tests.pipelines.test_trigger import CONFIG


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={"custom_webhook_rate_per_minute": 6})) as http:
        yield http


async def webhook_trigger(http: httpx.AsyncClient, account: Account, project_id: str, **extra: Any) -> dict[str, Any]:
    definitions = f"/api/v2/projects/{project_id}/pipeline-definitions"
    definition = (await http.get(definitions, headers=account.headers)).json()["items"][0]
    body = {"event_source": {"provider": "webhook", "webhook": {"sender": "datadog"}}, "event_name": "deploy", **extra}
    response = await http.post(f"{definitions}/{definition['id']}/triggers", json=body, headers=account.headers)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def hook_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_custom_webhook_starts_a_pipeline_with_its_body(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path, database_url: str
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, forge_secret = await hooked_project(client, database, admin, repo)
    trigger = await webhook_trigger(client, admin, project_id, checkout_ref="main", config_ref="main")
    url = trigger["event_source"]["webhook"]["url"]
    assert url.startswith(f"http://circlet.test/hooks/custom/{trigger['id']}?secret=")
    secret = url.split("secret=", 1)[1]
    assert len(secret) >= 40 and trigger["event_source"]["webhook"]["sender"] == "datadog"
    got = (await client.get(f"/api/v2/projects/{project_id}/triggers/{trigger['id']}", headers=admin.headers)).json()
    assert got["event_source"]["webhook"]["url"] == url
    head = commit(repo, {"x.txt": "1"})

    body = json.dumps({"alert": "cpu", "level": 3})
    response = await client.post(hook_path(url), content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    [pipeline] = await pipelines_of(client, admin, slug)
    assert pipeline["id"] == response.json()["id"] and pipeline["trigger"]["type"] == "webhook"
    assert pipeline["vcs"]["branch"] == "main" and pipeline["vcs"]["revision"] == head
    values = await values_of(client, admin, pipeline["id"])
    assert values["pipeline.trigger_parameters.webhook.body"] == body
    assert values["pipeline.event.name"] == "custom_webhook" and values["pipeline.trigger.type"] == "webhook"

    # The secrets are sealed at rest: neither the webhook's nor the forge's is stored as written.
    if database_url.startswith("sqlite"):
        raw = raw_sqlite_bytes(database_url)
        assert secret.encode() not in raw and forge_secret.encode() not in raw
    else:
        dump = await postgres_dump(database_url)
        assert secret not in dump and forge_secret not in dump


async def test_custom_webhook_refusals(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, _ = await hooked_project(client, database, admin, repo)
    trigger = await webhook_trigger(client, admin, project_id)
    path = hook_path(trigger["event_source"]["webhook"]["url"])
    base = path.split("?", 1)[0]

    for wrong in (base, base + "?secret=", base + "?secret=guess", path + "x"):
        response = await client.post(wrong, json={})
        assert response.status_code == 401 and "message" in response.json()
    for missing in ("/hooks/custom/not-a-uuid?secret=x", "/hooks/custom/00000000-0000-0000-0000-000000000000?secret=x"):
        assert (await client.post(missing, json={})).status_code == 404
    too_large = await client.post(path, content=b"[" + b"1," * (512 * 1024) + b"1]")
    assert too_large.status_code == 413 and "message" in too_large.json()
    not_json = await client.post(path, content=b"{not json")
    assert not_json.status_code == 400 and "message" in not_json.json()
    assert await pipelines_of(client, admin, slug) == []

    # Without refs, the project's default branch; at most the rate's burst at once, then 429.
    statuses = await asyncio.gather(*(client.post(path, json={"n": n}) for n in range(12)))
    codes = sorted(response.status_code for response in statuses)
    assert codes == [201] * 10 + [429] * 2, codes
    assert len(await pipelines_of(client, admin, slug)) == 10

    patched = await client.patch(
        f"/api/v2/projects/{project_id}/triggers/{trigger['id']}", json={"disabled": True}, headers=admin.headers
    )
    assert patched.json()["disabled"] is True
    other = await webhook_trigger(client, admin, project_id)
    await client.patch(
        f"/api/v2/projects/{project_id}/triggers/{other['id']}", json={"disabled": True}, headers=admin.headers
    )
    refused = await client.post(hook_path(other["event_source"]["webhook"]["url"]), json={})
    assert refused.status_code == 400 and "disabled" in refused.json()["message"]


async def test_key_rotation_reseals_the_hook_secrets(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path, settings: Settings
) -> None:
    """What ``circlet admin rotate-key`` does: every secret re-sealed, the old key dropped, the
    secrets still verify."""
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, forge_secret = await hooked_project(client, database, admin, repo)
    trigger = await webhook_trigger(client, admin, project_id)
    rotate_key_file(settings.home)
    rotated = load_keyring(settings.home)
    async with database.writing() as session:
        assert await reseal_hook_secrets(session, rotated) == 2
    async with database.writing() as session:
        assert await reseal_hook_secrets(session, rotated) == 0
    drop_previous_keys(settings.home)
    async with database.writing() as session:
        assert await hook_secret(session, load_keyring(settings.home), uuid.UUID(project_id)) == forge_secret
    got = await client.get(f"/api/v2/projects/{project_id}/triggers/{trigger['id']}", headers=admin.headers)
    assert got.json()["event_source"]["webhook"]["url"] == trigger["event_source"]["webhook"]["url"]
    response = await client.post(hook_path(trigger["event_source"]["webhook"]["url"]), json={})
    assert response.status_code == 201, response.text
