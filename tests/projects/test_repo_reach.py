"""Where an API caller may say a project's code lives, against the operator's reach (docs/security.md,
"What an organization can reach"); fetching is exercised end to end in tests/e2e/test_reach_e2e.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from circlet.db.engine import Database
from circlet.settings import Settings
from circlet.users import service as accounts
from tests.conftest import Account, app_client, make_account

API = "/api/v2"


async def create(client: httpx.AsyncClient, account: Account, vcs_url: str, name: str = "app") -> httpx.Response:
    return await client.post(
        f"{API}/organization/{account.org_slug}/project",
        json={"name": name, "vcs_url": vcs_url},
        headers=account.headers,
    )


@pytest.mark.parametrize(
    ("vcs_url", "says"),
    [
        ("/srv/git/other-org.git", "only the operator may create such a project"),
        ("file:///srv/git/other-org.git", "only the operator may create such a project"),
        ("relative/repo", "must be absolute"),
        ("ext::cat%20/etc/passwd", "the transport 'ext::' is not allowed"),
        ("fd::0", "the transport 'fd::' is not allowed"),
        ("http://git.example.com/app.git", "only https://, ssh://, git://"),
        ("-uhelp", "not a repository URL"),
    ],
)
async def test_the_api_refuses_what_reaches_into_the_server(
    client: httpx.AsyncClient, admin: Account, vcs_url: str, says: str
) -> None:
    response = await create(client, admin, vcs_url)
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert response.json()["message"].startswith("vcs_url: ")
    listed = await client.get(f"{API}/project/{admin.org_slug}/app", headers=admin.headers)
    assert listed.status_code == 404


async def test_the_api_refuses_the_servers_data_directory(
    client: httpx.AsyncClient, admin: Account, settings: Settings, tmp_path: Path
) -> None:
    mirrors = settings.home / "mirrors"
    (tmp_path / "looks-fine").symlink_to(mirrors)
    for url in (str(mirrors / "x.git"), str(settings.home), str(tmp_path / "looks-fine" / "x.git")):
        response = await create(client, admin, url)
        assert response.status_code == 400
        assert "inside the server's data directory ($CIRCLET_HOME)" in response.json()["message"]


async def test_network_urls_are_accepted(client: httpx.AsyncClient, admin: Account) -> None:
    for index, url in enumerate(
        ("https://github.com/acme/app.git", "git@github.com:acme/app.git", "ssh://git@host:2222/a", "git://h/a")
    ):
        response = await create(client, admin, url, name=f"app{index}")
        assert response.status_code == 200, response.text
        assert response.json()["vcs_info"]["vcs_url"] == url


@pytest.fixture
async def rooted(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app with ``CIRCLET_LOCAL_REPO_ROOTS`` set to ``tmp_path/git``."""
    async with app_client(settings.model_copy(update={"local_repo_roots": str(tmp_path / "git")})) as http:
        yield http


async def test_local_roots_admit_paths_under_them_only(
    rooted: httpx.AsyncClient, database: Database, settings: Settings, tmp_path: Path
) -> None:
    admin = await make_account(database)
    (tmp_path / "git").mkdir()
    (tmp_path / "git" / "link").symlink_to(settings.home)
    allowed = await create(rooted, admin, str(tmp_path / "git" / "team" / "app.git"))
    assert allowed.status_code == 200, allowed.text
    for url in (str(tmp_path / "other" / "app.git"), str(tmp_path / "git" / "link" / "mirrors")):
        refused = await create(rooted, admin, url, name="other")
        assert refused.status_code == 400, refused.text


async def test_only_allowed_users_create_organizations_when_the_operator_says(
    settings: Settings, database: Database
) -> None:
    async with app_client(settings.model_copy(update={"org_creation": "operators"})) as http:
        user = await make_account(database, role="viewer")
        body = {"name": "new-org", "vcs_type": "circleci"}
        refused = await http.post(f"{API}/organization", json=body, headers=user.headers)
        assert refused.status_code == 403
        assert "operator" in refused.json()["message"]
        async with database.writing() as session:
            await accounts.allow_org_creation(session, await accounts.find_user(session, user.login), True)
        created = await http.post(f"{API}/organization", json=body, headers=user.headers)
        assert created.status_code == 201, created.text


async def test_anyone_creates_organizations_by_default(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        f"{API}/organization", json={"name": "o", "vcs_type": "circleci"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
