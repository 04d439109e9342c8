"""Forge deliveries through the real app: a real git repository, signed GitHub, GitLab and
Gitea/Forgejo events, and the pipelines they create (or do not)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from circlet.db.engine import Database
from tests.conftest import Account, make_account
from tests.hooks.helpers import (
    ZERO,
    add_forge_trigger,
    github_pull_request,
    github_push,
    gitlab_push,
    hooked_project,
    pipelines_of,
    signed,
    values_of,
)
from tests.pipelines.helpers import commit, git, make_repo
from tests.pipelines.test_trigger import CONFIG, pipeline_settled


async def test_a_signed_github_push_creates_a_pipeline_at_the_pushed_revision_within_a_second(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    # The project's first push makes its mirror (a clone); the one measured is a later push, as most are.
    warm = await client.post(
        f"/hooks/github/{project_id}", **signed("github", github_push("refs/heads/main", ZERO, first), secret, "push")
    )
    assert warm.status_code == 201, warm.text
    pushed = commit(repo, {"a.txt": "1"}, message="the pushed one")
    commit(repo, {"a.txt": "2"}, message="a later one, not pushed yet")

    started = time.monotonic()
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/main", first, pushed, login=admin.login), secret, "push"),
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert elapsed < 1.0, f"delivery to pipeline took {elapsed:.3f} s"
    [created] = response.json()["pipelines"]
    assert created["number"] == 2

    pipeline = await pipeline_settled(client, admin, str(created["id"]))
    assert pipeline["vcs"]["revision"] == pushed and pipeline["vcs"]["branch"] == "main"
    assert pipeline["vcs"]["commit"]["subject"] == "the pushed one"
    assert pipeline["trigger"]["type"] == "webhook"
    assert pipeline["trigger"]["actor"]["login"] == admin.login  # the forge's login is a circlet user's
    values = await values_of(client, admin, pipeline["id"])
    assert values["pipeline.git.base_revision"] == first
    assert values["pipeline.git.revision"] == pushed
    assert values["pipeline.trigger_source"] == "webhook"
    assert values["pipeline.trigger.type"] == "github_app"
    assert values["pipeline.event.name"] == "push" and values["pipeline.event.action"] == "push"
    assert values["pipeline.event.github.ref"] == "refs/heads/main"
    assert values["pipeline.trigger_parameters.circleci.actor_id"] == admin.user_id


async def test_a_tag_push_builds_the_tag_commit(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    git(repo, "tag", "-a", "v1.0", "-m", "release")
    tag_object = git(repo, "rev-parse", "v1.0")
    payload = github_push("refs/tags/v1.0", ZERO, tag_object, login="someone-else")
    payload["head_commit"]["id"] = sha  # GitHub: `after` is the tag object, head_commit its commit

    response = await client.post(f"/hooks/github/{project_id}", **signed("github", payload, secret, "push"))
    assert response.status_code == 201, response.text
    pipeline = (await pipelines_of(client, admin, slug))[0]
    assert pipeline["vcs"]["tag"] == "v1.0" and "branch" not in pipeline["vcs"]
    assert pipeline["vcs"]["revision"] == sha
    assert pipeline["trigger"]["actor"]["login"] == "someone-else"  # no such circlet user: the login as given
    values = await values_of(client, admin, pipeline["id"])
    assert values["pipeline.git.tag"] == "v1.0" and "pipeline.git.base_revision" not in values


async def test_gitlab_and_gitea_pushes(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)

    second = commit(repo, {"b.txt": "gitlab"})
    response = await client.post(
        f"/hooks/gitlab/{project_id}",
        **signed("gitlab", gitlab_push("refs/heads/main", first, second), secret, "Push Hook"),
    )
    assert response.status_code == 201, response.text
    third = commit(repo, {"b.txt": "gitea"})
    response = await client.post(
        f"/hooks/gitea/{project_id}",
        **signed("gitea", github_push("refs/heads/main", second, third), secret, "push"),
    )
    assert response.status_code == 201, response.text
    fourth = commit(repo, {"b.txt": "forgejo"})
    response = await client.post(
        f"/hooks/gitea/{project_id}",
        **signed("forgejo", github_push("refs/heads/main", third, fourth), secret, "push"),
    )
    assert response.status_code == 201, response.text

    pipelines = await pipelines_of(client, admin, slug)
    assert [p["vcs"]["revision"] for p in pipelines] == [fourth, third, second]
    gitlab_values = await values_of(client, admin, pipelines[2]["id"])
    assert gitlab_values["pipeline.trigger.type"] == "gitlab"
    assert gitlab_values["pipeline.git.base_revision"] == first
    assert pipelines[2]["trigger"]["actor"]["login"] == "tanuki"


async def test_unsigned_or_wrongly_signed_deliveries_are_refused_and_create_nothing(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    payload = github_push("refs/heads/main", ZERO, sha)
    for forge in ("github", "gitlab", "gitea"):
        wrong = signed(forge, payload, "not-the-secret", "push")
        response = await client.post(f"/hooks/{forge}/{project_id}", **wrong)
        assert response.status_code == 401 and "message" in response.json()
        unsigned = signed(forge, payload, secret, "push")
        for name in ("X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature"):
            unsigned["headers"].pop(name, None)
        response = await client.post(f"/hooks/{forge}/{project_id}", **unsigned)
        assert response.status_code == 401 and "message" in response.json()
    # The body is signed, not just the headers: a signature for another body does not hold.
    tampered = signed("github", payload, secret, "push")
    tampered["content"] = tampered["content"].replace(b"main", b"evil")
    assert (await client.post(f"/hooks/github/{project_id}", **tampered)).status_code == 401
    assert await pipelines_of(client, admin, slug) == []

    # Another project's secret does not sign for this one; unknown projects and forges are 404.
    other = make_repo(tmp_path / "other", {".circleci/config.yml": CONFIG})
    _, other_id, other_secret = await hooked_project(client, database, admin, tmp_path / "other", name="other")
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/main", ZERO, other), other_secret, "push"),
    )
    assert response.status_code == 401
    for path in (
        f"/hooks/github/{'0' * 8}-0000-0000-0000-000000000000",
        "/hooks/github/nope",
        f"/hooks/svn/{other_id}",
    ):
        response = await client.post(path, **signed("github", payload, secret, "push"))
        assert response.status_code == 404 and "message" in response.json()


async def test_redelivery_ping_skip_and_ignored_events_create_nothing(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    second = commit(repo, {"c.txt": "1"})

    delivery = signed("github", github_push("refs/heads/main", first, second), secret, "push", delivery="d-1")
    assert (await client.post(f"/hooks/github/{project_id}", **delivery)).status_code == 201
    again = await client.post(f"/hooks/github/{project_id}", **delivery)
    assert again.status_code == 200 and "already" in again.json()["message"]
    assert len(await pipelines_of(client, admin, slug)) == 1

    ping = await client.post(f"/hooks/github/{project_id}", **signed("github", {"zen": "hi"}, secret, "ping"))
    assert ping.status_code == 200 and ping.json() == {"message": "pong"}

    for marker in ("[skip ci]", "[ci skip]"):
        skipped = commit(repo, {"c.txt": marker}, message=f"docs only {marker}")
        response = await client.post(
            f"/hooks/github/{project_id}",
            **signed("github", github_push("refs/heads/main", second, skipped), secret, "push"),
        )
        assert response.status_code == 200 and "skip" in response.json()["message"]

    issue = await client.post(f"/hooks/github/{project_id}", **signed("github", {"action": "x"}, secret, "issues"))
    assert issue.status_code == 200
    broken = signed("github", {}, secret, "push")
    broken["content"] = b"not json"
    broken["headers"]["X-Hub-Signature-256"] = (
        "sha256=" + __import__("hmac").new(secret.encode(), b"not json", "sha256").hexdigest()
    )
    assert (await client.post(f"/hooks/github/{project_id}", **broken)).status_code == 400
    assert len(await pipelines_of(client, admin, slug)) == 1


async def test_branch_deletion_fires_only_the_branch_delete_preset_and_disabled_triggers_fire_nothing(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    sha = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    git(repo, "branch", "gone")
    deletion = github_push("refs/heads/gone", sha, ZERO)

    response = await client.post(f"/hooks/github/{project_id}", **signed("github", deletion, secret, "push"))
    assert response.status_code == 200 and await pipelines_of(client, admin, slug) == []

    definitions = f"/api/v2/projects/{project_id}/pipeline-definitions"
    definition = (await client.get(definitions, headers=admin.headers)).json()["items"][0]
    triggers = (await client.get(f"{definitions}/{definition['id']}/triggers", headers=admin.headers)).json()["items"]
    assert [(t["event_source"]["provider"], t["event_preset"]) for t in triggers] == [("github_app", "all-pushes")]
    created = await add_forge_trigger(client, admin, project_id, "only-branch-delete")
    response = await client.post(f"/hooks/github/{project_id}", **signed("github", deletion, secret, "push"))
    assert response.status_code == 201, response.text
    [pipeline] = await pipelines_of(client, admin, slug)
    assert pipeline["vcs"]["branch"] == "gone" and pipeline["vcs"]["revision"] == sha

    # Disabled, every trigger fires nothing.
    for trigger_id in (triggers[0]["id"], created["id"]):
        patched = await client.patch(
            f"/api/v2/projects/{project_id}/triggers/{trigger_id}", json={"disabled": True}, headers=admin.headers
        )
        assert patched.status_code == 200 and patched.json()["disabled"] is True
    second = commit(repo, {"d.txt": "1"})
    response = await client.post(
        f"/hooks/github/{project_id}", **signed("github", github_push("refs/heads/main", sha, second), secret, "push")
    )
    assert response.status_code == 200 and "No enabled trigger" in response.json()["message"]
    response = await client.post(
        f"/hooks/github/{project_id}", **signed("github", github_push("refs/heads/x", sha, ZERO), secret, "push")
    )
    assert response.status_code == 200
    assert len(await pipelines_of(client, admin, slug)) == 1


@pytest.mark.parametrize(
    ("preset", "accepted", "refused"),
    [
        ("only-open-prs", {"action": "opened"}, {"action": "synchronize"}),
        ("only-build-prs", {"action": "synchronize"}, {"action": "labeled"}),
        ("only-labeled-prs", {"action": "labeled"}, {"action": "opened"}),
        ("only-ready-for-review-prs", {"action": "ready_for_review"}, {"action": "opened"}),
        ("only-build-pushes-to-non-draft-prs", {"action": "synchronize"}, {"action": "synchronize", "draft": True}),
    ],
)
async def test_pull_request_presets_build_the_head(
    client: httpx.AsyncClient,
    database: Database,
    admin: Account,
    tmp_path: Path,
    preset: str,
    accepted: dict[str, object],
    refused: dict[str, object],
) -> None:
    repo = tmp_path / "repo"
    base = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    git(repo, "checkout", "-q", "-b", "feature")
    head = commit(repo, {"f.txt": "1"}, message="the change")
    await add_forge_trigger(client, admin, project_id, preset)
    refused_payload = github_pull_request(str(refused["action"]), head, base_sha=base, draft=bool(refused.get("draft")))
    response = await client.post(
        f"/hooks/github/{project_id}", **signed("github", refused_payload, secret, "pull_request")
    )
    assert response.status_code == 200, response.text
    forked = github_pull_request(str(accepted["action"]), head, base_sha=base, forked=True)
    assert (
        await client.post(f"/hooks/github/{project_id}", **signed("github", forked, secret, "pull_request"))
    ).status_code == 200
    assert await pipelines_of(client, admin, slug) == []

    payload = github_pull_request(str(accepted["action"]), head, base_sha=base)
    response = await client.post(f"/hooks/github/{project_id}", **signed("github", payload, secret, "pull_request"))
    assert response.status_code == 201, response.text
    [pipeline] = await pipelines_of(client, admin, slug)
    assert pipeline["vcs"]["branch"] == "feature" and pipeline["vcs"]["revision"] == head
    values = await values_of(client, admin, pipeline["id"])
    assert values["pipeline.event.name"] == "pull_request"
    assert values["pipeline.event.action"] == accepted["action"]
    assert values["pipeline.event.github.pull_request.number"] == 7
    assert values["pipeline.event.github.pull_request.head.ref"] == "feature"
    assert values["pipeline.git.base_revision"] == base


async def test_merged_pull_request_builds_the_base_branch_at_the_merge(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    base = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    git(repo, "checkout", "-q", "-b", "feature")
    head = commit(repo, {"f.txt": "1"})
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = git(repo, "rev-parse", "HEAD")
    for preset in ("only-merged-prs", "only-merged-or-closed-prs"):
        await add_forge_trigger(client, admin, project_id, preset)
    closed = github_pull_request("closed", head, base_sha=base)
    response = await client.post(f"/hooks/github/{project_id}", **signed("github", closed, secret, "pull_request"))
    assert response.status_code == 201 and len(response.json()["pipelines"]) == 1  # merged-or-closed only
    merged = github_pull_request("closed", head, base_sha=base, merged=True, merge_sha=merge)
    response = await client.post(f"/hooks/github/{project_id}", **signed("github", merged, secret, "pull_request"))
    assert response.status_code == 201 and len(response.json()["pipelines"]) == 2  # both presets
    pipelines = await pipelines_of(client, admin, slug)
    assert all(p["vcs"]["branch"] == "main" for p in pipelines)
    assert [p["vcs"]["revision"] for p in pipelines[:2]] == [merge, merge]


async def test_autocancel_cancels_older_workflows_on_the_same_branch(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    patched = await client.patch(
        f"/api/v2/project/{slug}/settings", json={"advanced": {"autocancel_builds": True}}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    git(repo, "checkout", "-q", "-b", "feature")
    first = commit(repo, {"f.txt": "1"})
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/feature", ZERO, first), secret, "push"),
    )
    older = response.json()["pipelines"][0]["id"]
    await pipeline_settled(client, admin, str(older))

    async def workflows(pipeline_id: object) -> list[dict[str, object]]:
        items: list[dict[str, object]] = (
            await client.get(f"/api/v2/pipeline/{pipeline_id}/workflow", headers=admin.headers)
        ).json()["items"]
        return items

    assert [w["status"] for w in await workflows(older)] == ["running"]  # no runner: its jobs wait
    second = commit(repo, {"f.txt": "2"})
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/feature", first, second), secret, "push"),
    )
    assert response.status_code == 201
    assert [w["status"] for w in await workflows(older)] == ["canceled"]

    # The default branch is never auto-canceled (CircleCI's rule).
    git(repo, "checkout", "-q", "main")
    main_first = commit(repo, {"m.txt": "1"})
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/main", ZERO, main_first), secret, "push"),
    )
    on_main = response.json()["pipelines"][0]["id"]
    await pipeline_settled(client, admin, str(on_main))
    main_second = commit(repo, {"m.txt": "2"})
    await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/main", main_first, main_second), secret, "push"),
    )
    assert [w["status"] for w in await workflows(on_main)] == ["running"]


async def test_a_member_of_another_org_is_not_the_actor(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    stranger = await make_account(database)
    repo = tmp_path / "repo"
    sha = make_repo(repo, {".circleci/config.yml": CONFIG})
    slug, project_id, secret = await hooked_project(client, database, admin, repo)
    response = await client.post(
        f"/hooks/github/{project_id}",
        **signed("github", github_push("refs/heads/main", ZERO, sha, login=stranger.login), secret, "push"),
    )
    assert response.status_code == 201
    values = await values_of(client, admin, response.json()["pipelines"][0]["id"])
    assert "pipeline.trigger_parameters.circleci.actor_id" not in values
    assert values["pipeline.trigger_parameters.circleci.actor_login"] == stranger.login
