"""The operator commands of this issue: every one prints JSON, and errors are JSON on stderr, exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from circlet.cli import app


@pytest.fixture
def admin_cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CIRCLET_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, ["admin", *args, "--database-url", database_url])
        if ok:
            assert result.exit_code == 0, result.output
            return json.loads(result.stdout)
        assert result.exit_code == 1, result.output
        return json.loads(result.stderr)

    return run


def test_user_create(admin_cli: Any) -> None:
    login = "ada-lovelace"
    created = admin_cli("user", "create", login, "--name", "Ada Lovelace")
    assert created["login"] == login and created["name"] == "Ada Lovelace"
    assert "already exists" in admin_cli("user", "create", login.upper(), ok=False)["error"]


def test_org_add_member_and_roles(admin_cli: Any) -> None:
    boot = admin_cli("bootstrap", "--org", "cli-org", "--user", "cli-admin")
    admin_cli("user", "create", "cli-viewer")
    added = admin_cli("org", "add-member", "--org", "gh/cli-org", "--user", "cli-viewer", "--role", "viewer")
    assert added["role"] == "viewer" and added["org"]["id"] == boot["org"]["id"]
    changed = admin_cli("org", "add-member", "--org", "cli-org", "--user", "cli-viewer", "--role", "member")
    assert changed["role"] == "member"
    assert (
        "role must be"
        in admin_cli("org", "add-member", "--org", "cli-org", "--user", "cli-viewer", "--role", "owner", ok=False)[
            "error"
        ]
    )
    assert (
        "no organization"
        in admin_cli("org", "add-member", "--org", "gh/missing", "--user", "cli-viewer", ok=False)["error"]
    )
    assert "no user" in admin_cli("org", "add-member", "--org", "cli-org", "--user", "ghost", ok=False)["error"]


def test_group_add_member(admin_cli: Any, database_url: str, tmp_path: Path) -> None:
    import asyncio

    import httpx

    from circlet.app import create_app
    from circlet.settings import Settings

    boot = admin_cli("bootstrap", "--org", "grp-org", "--user", "grp-admin")
    admin_cli("user", "create", "grp-outsider")

    async def create_group() -> str:
        app_ = create_app(Settings(home=tmp_path / "home", database_url=database_url, auth_cache_seconds=0))
        transport = httpx.ASGITransport(app=app_)
        async with (
            app_.router.lifespan_context(app_),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            response = await http.post(
                f"/api/v2/organizations/{boot['org']['id']}/groups",
                json={"name": "deployers"},
                headers={"Circle-Token": boot["token"]},
            )
            return str(response.json()["id"])

    group_id = asyncio.run(create_group())
    joined = admin_cli("group", "add-member", "--org", "grp-org", "--group", "deployers", "--user", "grp-admin")
    assert joined["group"] == {"id": group_id, "name": "deployers"}
    assert (
        "not a member"
        in admin_cli(
            "group", "add-member", "--org", "grp-org", "--group", "deployers", "--user", "grp-outsider", ok=False
        )["error"]
    )
    assert (
        "no group"
        in admin_cli("group", "add-member", "--org", "grp-org", "--group", "nope", "--user", "grp-admin", ok=False)[
            "error"
        ]
    )


def test_project_create(admin_cli: Any, tmp_path: Path) -> None:
    admin_cli("bootstrap", "--org", "proj-org", "--user", "proj-admin")
    repo = tmp_path / "repo"
    repo.mkdir()
    created = admin_cli("project", "create", "gh/proj-org/app", "--repo", str(repo), "--default-branch", "trunk")
    assert created["slug"] == "gh/proj-org/app"
    assert created["vcs_info"] == {"vcs_url": str(repo.resolve()), "provider": "GitHub", "default_branch": "trunk"}
    remote = admin_cli("project", "create", "github/proj-org/remote", "--repo", "git@github.com:acme/remote.git")
    assert remote["vcs_info"]["vcs_url"] == "git@github.com:acme/remote.git"
    assert remote["vcs_info"]["default_branch"] == "main"
    assert "already exists" in admin_cli("project", "create", "gh/proj-org/APP", "--repo", str(repo), ok=False)["error"]
    assert "not a project slug" in admin_cli("project", "create", "gh/proj-org", "--repo", "x", ok=False)["error"]
    assert "no organization" in admin_cli("project", "create", "gh/nobody/app", "--repo", "x", ok=False)["error"]
    assert "name" in admin_cli("project", "create", "gh/proj-org/bad name", "--repo", "x", ok=False)["error"]


def test_project_create_keeps_local_paths_but_not_the_data_directory(admin_cli: Any, tmp_path: Path) -> None:
    admin_cli("bootstrap", "--org", "reach-org", "--user", "reach-admin")
    home = tmp_path / "home"
    (home / "mirrors").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(home / "mirrors")
    for repo in (str(home / "mirrors"), str(tmp_path / "alias" / "x.git"), f"file://{home}"):
        refused = admin_cli("project", "create", "gh/reach-org/app", "--repo", repo, ok=False)["error"]
        assert "CIRCLET_HOME" in refused
    refused = admin_cli("project", "create", "gh/reach-org/app", "--repo", "ext::sh%20-c%20id", ok=False)["error"]
    assert "the transport 'ext::' is not allowed" in refused
    created = admin_cli("project", "create", "gh/reach-org/app", "--repo", "repos/app")
    assert created["vcs_info"]["vcs_url"] == str(Path("repos/app").resolve())


def test_user_allow_org_creation(admin_cli: Any) -> None:
    admin_cli("user", "create", "orga")
    allowed = admin_cli("user", "allow-org-creation", "orga")
    assert allowed["may_create_orgs"] is True and allowed["user"]["login"] == "orga"
    assert admin_cli("user", "allow-org-creation", "orga", "--revoke")["may_create_orgs"] is False
    assert "no user" in admin_cli("user", "allow-org-creation", "nobody", ok=False)["error"]


def test_project_create_reads_the_default_branch_of_the_repository(admin_cli: Any, tmp_path: Path) -> None:
    import subprocess

    admin_cli("bootstrap", "--org", "head-org", "--user", "head-admin")
    repo = tmp_path / "trunk-repo"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "first"], check=True, env=env)
    created = admin_cli("project", "create", "gh/head-org/app", "--repo", str(repo))
    assert created["vcs_info"]["default_branch"] == "trunk"
