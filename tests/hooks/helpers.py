"""Forge deliveries as GitHub, GitLab and Gitea/Forgejo send them: payloads, signatures and headers."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import httpx

from circlet.db.engine import Database
from circlet.hooks.service import hook_secret
from tests.conftest import Account
from tests.pipelines.helpers import make_project

ZERO = "0" * 40


async def hooked_project(
    http: httpx.AsyncClient, database: Database, account: Account, repo: Path, name: str = "app"
) -> tuple[str, str, str]:
    """A project on ``repo`` with a webhook secret: (slug, project id, secret)."""
    slug = await make_project(database, account, repo, name)
    project_id = (await http.get(f"/api/v2/project/{slug}", headers=account.headers)).json()["id"]
    async with database.writing() as session:
        secret = await hook_secret(session, http.app.state.keyring, uuid.UUID(project_id))  # type: ignore[attr-defined]
    return slug, project_id, secret


def github_push(ref: str, before: str, after: str, *, message: str = "change", login: str = "octo") -> dict[str, Any]:
    deleted = after == ZERO
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO,
        "deleted": deleted,
        "head_commit": None if deleted else {"id": after, "message": message, "url": f"https://forge/c/{after}"},
        "repository": {"id": 1, "full_name": "acme/app", "default_branch": "main"},
        "pusher": {"name": login},
        "sender": {"login": login},
    }


def github_pull_request(
    action: str,
    head_sha: str,
    *,
    head_ref: str = "feature",
    base_ref: str = "main",
    base_sha: str = ZERO,
    draft: bool = False,
    merged: bool = False,
    merge_sha: str | None = None,
    forked: bool = False,
    login: str = "octo",
) -> dict[str, Any]:
    return {
        "action": action,
        "number": 7,
        "pull_request": {
            "number": 7,
            "title": "A change",
            "html_url": "https://forge/pr/7",
            "draft": draft,
            "merged": merged,
            "merge_commit_sha": merge_sha,
            "head": {"ref": head_ref, "sha": head_sha, "repo": {"id": 2 if forked else 1}},
            "base": {"ref": base_ref, "sha": base_sha, "repo": {"id": 1}},
        },
        "sender": {"login": login},
    }


def gitlab_push(ref: str, before: str, after: str, *, login: str = "tanuki") -> dict[str, Any]:
    return {
        "object_kind": "tag_push" if ref.startswith("refs/tags/") else "push",
        "ref": ref,
        "before": before,
        "after": after,
        "checkout_sha": None if after == ZERO else after,
        "user_username": login,
        "project": {"path_with_namespace": "acme/app", "default_branch": "main"},
        "commits": [],
    }


def signed(
    forge: str, payload: dict[str, Any], secret: str, event: str, *, delivery: str | None = None
) -> dict[str, Any]:
    """httpx arguments of a delivery of ``payload`` as ``forge`` sends it, signed with ``secret``."""
    body = json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if forge == "github":
        headers |= {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={digest}"}
    elif forge == "gitlab":
        headers |= {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": secret}
    elif forge == "gitea":
        headers |= {"X-Gitea-Event": event, "X-Gitea-Delivery": delivery, "X-Gitea-Signature": digest}
    else:  # forgejo
        headers |= {"X-Forgejo-Event": event, "X-Forgejo-Delivery": delivery, "X-Forgejo-Signature": digest}
    return {"content": body, "headers": headers}


async def pipelines_of(http: httpx.AsyncClient, account: Account, slug: str) -> list[dict[str, Any]]:
    response = await http.get(f"/api/v2/project/{slug}/pipeline", headers=account.headers)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def values_of(http: httpx.AsyncClient, account: Account, pipeline_id: str) -> dict[str, Any]:
    values: dict[str, Any] = (await http.get(f"/api/v2/pipeline/{pipeline_id}/values", headers=account.headers)).json()
    return values


async def add_forge_trigger(http: httpx.AsyncClient, account: Account, project_id: str, preset: str) -> dict[str, Any]:
    """A `github_app` trigger with ``preset`` on the project's first definition (createTrigger)."""
    definitions = f"/api/v2/projects/{project_id}/pipeline-definitions"
    definition = (await http.get(definitions, headers=account.headers)).json()["items"][0]
    response = await http.post(
        f"{definitions}/{definition['id']}/triggers",
        json={"event_source": {"provider": "github_app", "repo": {"external_id": project_id}}, "event_preset": preset},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created
