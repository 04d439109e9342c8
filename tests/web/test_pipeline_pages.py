"""The dashboard, a project's pipelines and a pipeline's page: what each role sees, approving from
the graph, escaping of what users wrote, and statements per page."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from circlet.db.engine import Database
from circlet.settings import Settings
from tests.conftest import Account, Team, app_client
from tests.pipelines.helpers import make_project, make_repo, wait_for
from tests.web.helpers import csrf_of, signed_in
from tests.web.seeding import project_id_of, seed_pipelines

HELD = """
version: 2.1
parameters:
  greeting: {type: string, default: hello}
jobs:
  deploy: {docker: [{image: cimg/base:stable}], steps: [{run: echo deploy}]}
workflows:
  release:
    jobs:
      - hold: {type: approval}
      - deploy: {requires: [hold]}
"""
XSS_SUBJECT = "<script>alert('subject')</script>"
XSS_BRANCH = 'x"><img/src=x/onerror=alert(1)>'


@pytest.fixture
async def web(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as http:
        yield http


async def browser_for(settings: Settings, account: Account) -> tuple[httpx.AsyncClient, str, Any]:
    context = app_client(settings)
    http = await context.__aenter__()
    csrf = await signed_in(http, account.token)
    return http, csrf, context


async def trigger(http: httpx.AsyncClient, account: Account, slug: str, **body: Any) -> dict[str, Any]:
    answer = await http.post(f"/api/v2/project/{slug}/pipeline", headers=account.headers, json=body or None)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()

    async def workflows() -> list[dict[str, Any]] | None:
        listed = await http.get(f"/api/v2/pipeline/{created['id']}/workflow", headers=account.headers)
        return listed.json()["items"] or None

    created["workflows"] = await wait_for(workflows, timeout=30)
    return created


@pytest.fixture
async def held(team: Team, database: Database, tmp_path: Path, web: httpx.AsyncClient) -> dict[str, Any]:
    """A project whose pipeline waits on an approval; its last commit's subject is a script tag, and
    a second pipeline (written to the table: git refs circlet accepts cannot hold markup, a webhook's
    may) ran on a branch whose name is markup."""
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": HELD}, message=XSS_SUBJECT)
    slug = await make_project(database, team.admin, repo)
    pipeline = await trigger(web, team.admin, slug, parameters={"greeting": "<b>hi</b>"})
    _, org, name = slug.split("/")
    await seed_pipelines(
        database, await project_id_of(database, org, name), 1, actor_id=None, first_number=2, branch=XSS_BRANCH
    )
    return {"slug": slug, "pipeline": pipeline}


async def test_the_dashboard_lists_the_pipelines_a_user_can_see(
    settings: Settings, team: Team, held: dict[str, Any]
) -> None:
    for role, sees in (("viewer", True), ("outsider", False)):
        http, _, context = await browser_for(settings, team.by_role(role))
        try:
            page = (await http.get("/")).text
            assert (f'href="/pipelines/{held["slug"]}/1"' in page) is sees
            assert ("on_hold" in page) is sees
        finally:
            await context.__aexit__(None, None, None)


async def test_the_dashboard_filters_by_branch_org_project_and_mine(
    settings: Settings, team: Team, held: dict[str, Any]
) -> None:
    http, _, context = await browser_for(settings, team.viewer)
    try:
        vcs, org, project = held["slug"].split("/")
        only_main = (await http.get("/", params={"org": f"{vcs}/{org}", "project": project, "branch": "main"})).text
        assert f'/pipelines/{held["slug"]}/1"' in only_main and f'/pipelines/{held["slug"]}/2"' not in only_main
        other_branch = (await http.get("/", params={"branch": XSS_BRANCH})).text
        assert f'/pipelines/{held["slug"]}/2"' in other_branch and f'/pipelines/{held["slug"]}/1"' not in other_branch
        # The viewer triggered nothing.
        mine = (await http.get("/", params={"mine": "true"})).text
        assert f"/pipelines/{held['slug']}/" not in mine
        listed = (await http.get(f"/pipelines/{held['slug']}")).text
        assert f'/pipelines/{held["slug"]}/1"' in listed and f'/pipelines/{held["slug"]}/2"' in listed
    finally:
        await context.__aexit__(None, None, None)


async def test_an_outsider_gets_404_for_every_page_of_the_project(
    settings: Settings, team: Team, held: dict[str, Any]
) -> None:
    http, csrf, context = await browser_for(settings, team.outsider)
    workflow_id = held["pipeline"]["workflows"][0]["id"]
    base = f"/pipelines/{held['slug']}/1"
    try:
        for path in (f"/pipelines/{held['slug']}", base, f"{base}/workflows/{workflow_id}"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert held["slug"].split("/")[2] not in answer.text.split("<main", 1)[1]
        approve = await http.post(f"{base}/workflows/{workflow_id}/approve/{uuid.uuid4()}", data={"csrf": csrf})
        assert approve.status_code == 404
    finally:
        await context.__aexit__(None, None, None)


async def test_a_viewer_sees_the_graph_without_an_approve_button_and_a_forged_approve_is_403(
    settings: Settings, team: Team, held: dict[str, Any], web: httpx.AsyncClient
) -> None:
    http, csrf, context = await browser_for(settings, team.viewer)
    workflow_id = held["pipeline"]["workflows"][0]["id"]
    try:
        page = (await http.get(f"/pipelines/{held['slug']}/1")).text
        assert page.count('class="job node-') == 2 and page.count('class="edge"') == 1
        assert 'data-job="hold"' in page and "Approve" not in page
        jobs = (await web.get(f"/api/v2/workflow/{workflow_id}/job", headers=team.admin.headers)).json()["items"]
        request_id = next(job["approval_request_id"] for job in jobs if job["name"] == "hold")
        forged = await http.post(
            f"/pipelines/{held['slug']}/1/workflows/{workflow_id}/approve/{request_id}", data={"csrf": csrf}
        )
        assert forged.status_code == 403
    finally:
        await context.__aexit__(None, None, None)


async def test_a_member_approves_from_the_pipeline_page(
    settings: Settings, team: Team, held: dict[str, Any], web: httpx.AsyncClient
) -> None:
    http, csrf, context = await browser_for(settings, team.member)
    workflow_id = held["pipeline"]["workflows"][0]["id"]
    try:
        page = (await http.get(f"/pipelines/{held['slug']}/1/workflows/{workflow_id}")).text
        form = re.search(r'<form method="post" action="([^"]+/approve/[^"]+)">', page)
        assert form, "the member sees the Approve button"
        no_token = await http.post(form.group(1), data={})
        assert no_token.status_code == 403
        answer = await http.post(form.group(1), data={"csrf": csrf_of(page)})
        assert answer.status_code == 303 and answer.headers["location"].endswith(workflow_id)
        jobs = (await web.get(f"/api/v2/workflow/{workflow_id}/job", headers=team.admin.headers)).json()["items"]
        hold = next(job for job in jobs if job["name"] == "hold")
        assert hold["status"] == "success" and hold["approved_by"] == team.member.user_id
        again = await http.post(form.group(1), data={"csrf": csrf})
        assert again.status_code == 400 and "not on hold" in again.text
    finally:
        await context.__aexit__(None, None, None)


async def test_what_users_wrote_shows_as_text(settings: Settings, team: Team, held: dict[str, Any]) -> None:
    http, _, context = await browser_for(settings, team.admin)
    try:
        pages = [
            (await http.get("/")).text,
            (await http.get(f"/pipelines/{held['slug']}")).text,
            (await http.get(f"/pipelines/{held['slug']}/1")).text,
            (await http.get(f"/pipelines/{held['slug']}/2")).text,
        ]
        for page in pages:
            assert "<script>alert" not in page and "<img/src=x" not in page and "<b>hi</b>" not in page
        assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in pages[0]
        assert "x&#34;&gt;&lt;img/src=x/onerror=alert(1)&gt;" in pages[3]
        assert "&lt;b&gt;hi&lt;/b&gt;" in pages[2]  # the parameter's value
    finally:
        await context.__aexit__(None, None, None)


@contextmanager
def counting_statements(database: Database) -> Iterator[list[str]]:
    """The statements the test's own task runs (the ASGI client runs the request in it), not those of
    the app's background loops (sweeps), which may run at any moment."""
    statements: list[str] = []
    task = asyncio.current_task()

    def count(*args: Any) -> None:
        if asyncio.current_task() is task:
            statements.append(args[2])

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)


async def test_list_pages_make_as_many_statements_for_20_pipelines_as_for_1(
    settings: Settings, team: Team, database: Database, tmp_path: Path
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": HELD})
    slug = await make_project(database, team.admin, tmp_path / "repo")
    _, org, name = slug.split("/")
    project_id = await project_id_of(database, org, name)
    http, _, context = await browser_for(settings, team.viewer)
    app_database: Database = http.app.state.database  # type: ignore[attr-defined]
    try:
        counts = []
        for total in (1, 25):
            await seed_pipelines(
                database, project_id, total, actor_id=uuid.UUID(team.admin.user_id), first_number=len(counts) * 100 + 1
            )
            per_page = []
            for path in ("/", f"/pipelines/{slug}"):
                with counting_statements(app_database) as statements:
                    answer = await http.get(path)
                assert answer.status_code == 200 and "change 0" in answer.text
                per_page.append(len(statements))
            counts.append(per_page)
        assert counts[0] == counts[1], counts
        assert min(counts[1]) >= 3 and max(counts[1]) <= 12, counts
    finally:
        await context.__aexit__(None, None, None)


THREE_WORKFLOWS = """
version: 2.1
jobs:
  deploy: {docker: [{image: cimg/base:stable}], steps: [{run: echo deploy}]}
workflows:
  one: {jobs: [{hold: {type: approval}}, {deploy: {requires: [hold]}}]}
  two: {jobs: [{hold: {type: approval}}, {deploy: {requires: [hold]}}]}
  three: {jobs: [{hold: {type: approval}}, {deploy: {requires: [hold]}}]}
"""


async def test_the_pipeline_page_makes_as_many_statements_for_three_workflows_as_for_one(
    settings: Settings, team: Team, database: Database, tmp_path: Path, web: httpx.AsyncClient
) -> None:
    counts = []
    for name, config in (("single", HELD), ("triple", THREE_WORKFLOWS)):
        make_repo(tmp_path / name, {".circleci/config.yml": config})
        slug = await make_project(database, team.admin, tmp_path / name, name)
        created = await trigger(web, team.admin, slug)
        expected = 3 if name == "triple" else 1

        async def all_held(created: dict[str, Any] = created, expected: int = expected) -> bool:
            listed = await web.get(f"/api/v2/pipeline/{created['id']}/workflow", headers=team.admin.headers)
            return [w["status"] for w in listed.json()["items"]] == ["on_hold"] * expected

        await wait_for(all_held, timeout=30)
        http, _, context = await browser_for(settings, team.viewer)
        app_database: Database = http.app.state.database  # type: ignore[attr-defined]
        try:
            await http.get(f"/pipelines/{slug}/1")  # warm: the first request loads what is cached
            with counting_statements(app_database) as statements:
                page = (await http.get(f"/pipelines/{slug}/1")).text
            assert page.count('class="job node-') == 2 * expected
            counts.append(len(statements))
        finally:
            await context.__aexit__(None, None, None)
    assert counts[0] == counts[1] and counts[0] >= 5, counts


async def test_a_member_triggers_a_pipeline_with_parameters_and_a_viewer_cannot(
    settings: Settings, team: Team, database: Database, tmp_path: Path, web: httpx.AsyncClient
) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": HELD})
    slug = await make_project(database, team.admin, tmp_path / "repo")
    member, member_csrf, member_context = await browser_for(settings, team.member)
    viewer, viewer_csrf, viewer_context = await browser_for(settings, team.viewer)
    try:
        assert "Trigger pipeline" in (await member.get(f"/pipelines/{slug}")).text
        assert "Trigger pipeline" not in (await viewer.get(f"/pipelines/{slug}")).text
        forged = await viewer.post(f"/pipelines/{slug}/trigger", data={"csrf": viewer_csrf, "branch": "main"})
        assert forged.status_code == 403
        bad = await member.post(f"/pipelines/{slug}/trigger", data={"csrf": member_csrf, "parameters": "oops"})
        assert bad.status_code == 400 and "is not name=value" in bad.text
        answer = await member.post(
            f"/pipelines/{slug}/trigger",
            data={"csrf": member_csrf, "branch": "main", "parameters": "greeting=<i>hey</i>\n"},
        )
        assert answer.status_code == 303 and answer.headers["location"] == f"/pipelines/{slug}/1"
        page = (await member.get(answer.headers["location"])).text
        assert "&lt;i&gt;hey&lt;/i&gt;" in page
        listed = (await web.get(f"/api/v2/project/{slug}/pipeline", headers=team.admin.headers)).json()["items"]
        assert len(listed) == 1 and listed[0]["trigger"]["actor"]["login"] == team.member.login
    finally:
        await member_context.__aexit__(None, None, None)
        await viewer_context.__aexit__(None, None, None)
