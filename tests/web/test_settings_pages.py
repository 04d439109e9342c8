"""Project and organization settings pages, and status badges: what each role sees and may do,
secrets never shown back, forged posts refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import Database
from circlet.groups import service as group_accounts
from circlet.runners import service as runner_admin
from circlet.settings import Settings
from circlet.users import service as accounts
from tests.conftest import Team, app_client
from tests.pipelines.helpers import make_project, make_repo
from tests.web.helpers import signed_in
from tests.web.test_pipeline_pages import HELD, trigger

SECRET = "s3cr3t-value-never-shown"


class Browser:
    """A signed-in test client and its session's CSRF token."""

    def __init__(self, http: httpx.AsyncClient, csrf: str) -> None:
        self.http = http
        self.csrf = csrf

    async def post(self, path: str, **data: str) -> httpx.Response:
        return await self.http.post(path, data={"csrf": self.csrf, **data})


@pytest.fixture
async def browsers(settings: Settings, team: Team) -> Any:
    opened: dict[str, Browser] = {}
    contexts = []
    for role in ("admin", "member", "viewer", "outsider"):
        context = app_client(settings)
        http = await context.__aenter__()
        contexts.append(context)
        opened[role] = Browser(http, await signed_in(http, team.by_role(role).token))
    yield opened
    for context in contexts:
        await context.__aexit__(None, None, None)


@pytest.fixture
async def project(team: Team, database: Database, tmp_path: Path) -> str:
    make_repo(tmp_path / "repo", {".circleci/config.yml": HELD})
    return await make_project(database, team.admin, tmp_path / "repo")


async def test_project_variables_are_added_replaced_and_deleted_by_admins_only(
    browsers: dict[str, Browser], project: str, team: Team
) -> None:
    base = f"/settings/project/{project}"
    admin, viewer, outsider = browsers["admin"], browsers["viewer"], browsers["outsider"]
    assert (await admin.post(f"{base}/env-vars", name="DEPLOY_KEY", value=SECRET)).status_code == 303
    assert (await admin.post(f"{base}/env-vars", name="DEPLOY_KEY", value=SECRET + "-2")).status_code == 303
    page = (await admin.http.get(base)).text
    assert "DEPLOY_KEY" in page and SECRET not in page and "xxxx" in page and "Delete" in page
    listed = (await admin.http.get(f"/api/v2/project/{project}/envvar", headers=team.admin.headers)).json()
    assert [item["name"] for item in listed["items"]] == ["DEPLOY_KEY"]

    seen = (await viewer.http.get(base)).text
    assert "DEPLOY_KEY" in seen and SECRET not in seen and "Delete" not in seen and "Save variable" not in seen
    assert (await viewer.post(f"{base}/env-vars/delete", name="DEPLOY_KEY")).status_code == 403
    assert (await outsider.http.get(base)).status_code == 404
    assert (await outsider.post(f"{base}/env-vars", name="X", value="y")).status_code == 404

    assert (await admin.post(f"{base}/env-vars/delete", name="DEPLOY_KEY")).status_code == 303
    assert "DEPLOY_KEY" not in (await admin.http.get(base)).text


async def test_a_bad_variable_name_is_a_page_with_the_apis_message(browsers: dict[str, Browser], project: str) -> None:
    answer = await browsers["admin"].post(f"/settings/project/{project}/env-vars", name="", value="x")
    assert answer.status_code == 400 and "text/html" in answer.headers["content-type"]


async def test_checkout_keys_and_definitions_show_in_project_settings(
    browsers: dict[str, Browser], project: str
) -> None:
    base = f"/settings/project/{project}"
    admin = browsers["admin"]
    assert (await admin.post(f"{base}/checkout-keys")).status_code == 303
    page = (await admin.http.get(base)).text
    fingerprint = re.search(r'name="fingerprint" value="([^"]+)"', page)
    assert fingerprint and "deploy-key" in page and "BEGIN" not in page
    assert ".circleci/config.yml" in page  # the default definition
    assert ".circleci/config.yml" not in (await browsers["viewer"].http.get(base)).text  # members+ read definitions
    assert (await admin.post(f"{base}/checkout-keys/delete", fingerprint=fingerprint.group(1))).status_code == 303
    assert fingerprint.group(1) not in (await admin.http.get(base)).text


async def test_contexts_variables_by_name_and_restrictions(
    browsers: dict[str, Browser], team: Team, database: Database
) -> None:
    admin, viewer, outsider = browsers["admin"], browsers["viewer"], browsers["outsider"]
    base = f"/settings/organization/{team.admin.org_slug}/contexts"
    created = await admin.post(base, name="<b>deploy</b>")
    assert created.status_code == 303
    context_page = created.headers["location"]
    assert (await admin.post(f"{context_page}/env-vars", name="TOKEN", value=SECRET)).status_code == 303
    assert (
        await admin.post(
            f"{context_page}/restrictions",
            restriction_type="expression",
            restriction_value='pipeline.git.branch == "main"',
        )
    ).status_code == 303
    page = (await admin.http.get(context_page)).text
    assert "TOKEN" in page and SECRET not in page and "&lt;b&gt;deploy&lt;/b&gt;" in page
    assert "pipeline.git.branch == &#34;main&#34;" in page
    listing = (await viewer.http.get(base)).text
    assert "&lt;b&gt;deploy&lt;/b&gt;" in listing and "Create context" not in listing
    seen = (await viewer.http.get(context_page)).text
    assert "TOKEN" in seen and "Delete" not in seen
    assert (await viewer.post(f"{context_page}/env-vars", name="TOKEN", value="stolen")).status_code == 403
    assert (await outsider.http.get(context_page)).status_code == 404
    # The context under the outsider's own organization's URL is no more visible.
    foreign = context_page.replace(team.admin.org_slug, team.outsider.org_slug)
    assert (await outsider.http.get(foreign)).status_code == 404
    restriction = re.search(r'name="restriction_id" value="([^"]+)"', page)
    assert restriction
    assert (
        await admin.post(f"{context_page}/restrictions/delete", restriction_id=restriction.group(1))
    ).status_code == 303
    assert (await admin.post(f"{context_page}/env-vars/delete", name="TOKEN")).status_code == 303
    assert "TOKEN" not in (await admin.http.get(context_page)).text


async def test_groups_and_runners_pages(browsers: dict[str, Browser], team: Team, database: Database) -> None:
    groups_page = f"/settings/organization/{team.admin.org_slug}/groups"
    made = await browsers["admin"].http.post(
        f"/api/v2/organizations/{team.admin.org_id}/groups",
        headers=team.admin.headers,
        json={"name": "release-team", "description": "<i>ships</i>"},
    )
    assert made.status_code in (200, 201), made.text
    async with database.writing() as session:
        org = await accounts.find_org_by_name(session, team.admin.org_slug)
        await group_accounts.add_group_member(
            session, org, "release-team", await accounts.find_user(session, team.member.login)
        )
        name = team.admin.org_slug.split("/")[1]
        await runner_admin.create_class(session, None, f"{name}/big", "<big> machines", org)
    page = (await browsers["viewer"].http.get(groups_page)).text
    assert "release-team" in page and team.member.login in page and "&lt;i&gt;ships&lt;/i&gt;" in page
    runners = (await browsers["viewer"].http.get(f"/settings/organization/{team.admin.org_slug}/runners")).text
    assert f"{name}/big" in runners and "&lt;big&gt; machines" in runners
    assert (await browsers["outsider"].http.get(groups_page)).status_code == 404


async def test_badges_are_private_until_the_project_is_made_public(
    browsers: dict[str, Browser], project: str, team: Team, settings: Settings
) -> None:
    badge = f"/badge/{project}.svg"
    admin = browsers["admin"]
    await trigger(admin.http, team.admin, project)
    async with app_client(settings) as anonymous:
        assert (await anonymous.get(badge)).status_code == 404
        assert (await anonymous.get(f"{badge}?circle-token={team.outsider.token}")).status_code == 404
        with_token = await anonymous.get(f"{badge}?circle-token={team.viewer.token}")
        assert with_token.status_code == 200 and "on hold" in with_token.text.lower()
        mine = await browsers["viewer"].http.get(badge)
        assert mine.status_code == 200 and mine.headers["content-type"].startswith("image/svg+xml")
        assert (await browsers["viewer"].post(f"/settings/project/{project}/badge", public="true")).status_code == 403
        assert (await admin.post(f"/settings/project/{project}/badge", public="true")).status_code == 303
        public = await anonymous.get(f"{badge}?style=shield")
        assert public.status_code == 200 and "on hold" in public.text
        assert "NO BUILDS" in (await anonymous.get(f"{badge}?branch=nothing-here")).text
        assert (await anonymous.get(f"/badge/{project}.png")).status_code == 404
