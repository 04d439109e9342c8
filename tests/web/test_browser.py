"""The web app in a real browser: Playwright driving Debian's chromium (never a downloaded browser)
against a real ``circlet serve``. Each page visited is saved as a screenshot under
``test-output/web/`` (or ``$CIRCLET_TEST_OUTPUT/web/``) for a reviewer to look at."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import create_database
from circlet.db.migrate import upgrade_to_head
from circlet.projects import service as project_accounts
from circlet.settings import Settings
from circlet.users import service as accounts
from tests.conftest import LiveServer, free_port, server_env
from tests.pipelines.helpers import make_repo
from tests.web.test_pipeline_pages import HELD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT = Path(os.environ.get("CIRCLET_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "web"
XSS_SUBJECT = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
PASSWORD = "a long test password"

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield launched
        launched.close()


def shot(page: Any, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module (on SQLite: what is tested here is the pages, the database is the
    other tests' concern): an organization with an admin (a password), a viewer (a token), and a
    project whose pipelines wait on an approval; the project's last commit subject is markup. The
    accounts are made in-process, as ``circlet admin`` makes them (its commands are tested elsewhere):
    a command's process start costs seconds on a loaded machine."""
    tmp_path = tmp_path_factory.mktemp("browser")
    home = tmp_path / "home"
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'circlet.db'}"
    repo = tmp_path / "repo"
    make_repo(repo, {".circleci/config.yml": HELD}, message=XSS_SUBJECT)
    upgrade_to_head(database_url)
    with ThreadPoolExecutor(1) as thread:  # a loop of its own: this fixture may run inside pytest-asyncio's
        tokens = thread.submit(asyncio.run, make_accounts(database_url, repo)).result()
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    server.start()
    try:
        yield {"url": server.url, **tokens}
    finally:
        server.stop()


async def make_accounts(database_url: str, repo: Path) -> dict[str, str]:
    database = create_database(database_url)
    try:
        async with database.writing() as session:
            org = await accounts.ensure_org(session, "acme")
            ada = await accounts.ensure_user(session, "ada")
            await accounts.add_member(session, org, ada, "admin")
            await accounts.set_password(session, ada, PASSWORD)
            vic = await accounts.ensure_user(session, "vic")
            await accounts.add_member(session, org, vic, "viewer")
            await project_accounts.add_project_for_operator(
                session, org, "app", str(repo), "main", Settings().repo_rules()
            )
            admin_token = (await accounts.mint_token(session, ada)).token
            viewer_token = (await accounts.mint_token(session, vic)).token
    finally:
        await database.dispose()
    return {"admin_token": admin_token, "viewer_token": viewer_token}


def trigger(acme: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{acme['url']}/api/v2/project/gh/acme/app/pipeline", headers={"Circle-Token": acme["admin_token"]}
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def new_page(browser: Any, *, width: int = 1280) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # A refusal by the Content-Security-Policy (an inline script or style htmx tried) is an error too.
    page.on("console", lambda message: dialogs.append(message.text) if message.type == "error" else None)
    return context, page, dialogs


def sign_in_with_password(page: Any, url: str) -> None:
    page.goto(f"{url}/")
    assert "/signin" in page.url
    page.fill("#login", "ada")
    page.fill("#password", PASSWORD)
    page.click("form:has(#password) button[type=submit]")
    page.wait_for_url(f"{url}/")


def sign_in_with_token(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/signin")
    page.fill("#token", token)
    page.click("form:has(#token) button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_sign_in_with_a_password_and_the_dashboard_shows_a_new_pipeline_without_reload(
    browser: Any, acme: dict[str, Any]
) -> None:
    context, page, dialogs = new_page(browser)
    try:
        page.goto(f"{acme['url']}/signin")
        shot(page, "signin")
        sign_in_with_password(page, acme["url"])
        assert page.locator("header .login").inner_text() == "ada"
        shot(page, "dashboard-empty")
        created = trigger(acme)
        # htmx refreshes the list every 5 s: the new row appears without a reload.
        page.wait_for_selector(f'a[href="/pipelines/gh/acme/app/{created["number"]}"]', timeout=20_000)
        page.wait_for_selector("text=on_hold", timeout=20_000)
        assert XSS_SUBJECT in page.locator("td .subject").first.inner_text()  # shown as text
        shot(page, "dashboard")
        assert dialogs == []
    finally:
        context.close()


def test_approve_a_held_job_from_the_pipeline_page(browser: Any, acme: dict[str, Any]) -> None:
    created = trigger(acme)
    context, page, dialogs = new_page(browser)
    try:
        sign_in_with_password(page, acme["url"])
        page.goto(f"{acme['url']}/pipelines/gh/acme/app/{created['number']}")
        page.wait_for_selector('svg [data-job="hold"]')
        for _ in range(50):  # the compile finishes within moments of the trigger
            if page.locator("button.approve").count():
                break
            page.wait_for_timeout(200)
            page.reload()
        assert page.locator("svg g.job, svg a.job").count() == 2 and page.locator("svg path.edge").count() == 1
        shot(page, "pipeline-held")
        page.click('button.approve[data-job="hold"]')
        page.wait_for_selector("svg .node-success[data-job='hold']")
        shot(page, "pipeline-approved")
        workflows = httpx.get(
            f"{acme['url']}/api/v2/pipeline/{created['id']}/workflow", headers={"Circle-Token": acme["admin_token"]}
        ).json()["items"]
        jobs = httpx.get(
            f"{acme['url']}/api/v2/workflow/{workflows[0]['id']}/job", headers={"Circle-Token": acme["admin_token"]}
        ).json()["items"]
        assert next(job for job in jobs if job["name"] == "hold")["status"] == "success"
        # An admin's settings pages, with their forms.
        page.goto(f"{acme['url']}/settings/project/gh/acme/app")
        page.fill("#env-name", "DEPLOY_TOKEN")
        page.fill("#env-value", "never-shown-back")
        page.click("text=Save variable")
        page.wait_for_selector("td:text('DEPLOY_TOKEN')")
        assert "never-shown-back" not in page.content()
        shot(page, "project-settings-admin")
        page.goto(f"{acme['url']}/settings/organization/gh/acme/contexts")
        page.fill("#ctx-name", "release")
        page.click("text=Create context")
        page.fill("#var-name", "SIGNING_KEY")
        page.fill("#var-value", "never-shown-back")
        page.click("text=Save variable")
        page.wait_for_selector("td:text('SIGNING_KEY')")
        assert "never-shown-back" not in page.content()
        shot(page, "context-admin")
        assert dialogs == []
    finally:
        context.close()


def test_a_viewer_signed_in_with_a_token_has_no_buttons_and_pages_fit_360_px(
    browser: Any, acme: dict[str, Any]
) -> None:
    created = trigger(acme)
    context, page, dialogs = new_page(browser, width=360)
    try:
        sign_in_with_token(page, acme["url"], acme["viewer_token"])
        page.goto(f"{acme['url']}/pipelines/gh/acme/app/{created['number']}")
        page.wait_for_selector('svg [data-job="hold"]')
        page.wait_for_selector("text=waiting for approval", timeout=20_000)
        assert page.locator("button.approve").count() == 0
        shot(page, "pipeline-viewer-360")
        for path, name in (
            ("/", "dashboard-360"),
            ("/pipelines/gh/acme/app", "project-360"),
            ("/settings/project/gh/acme/app", "project-settings-viewer-360"),
            ("/settings/organization/gh/acme/contexts", "contexts-viewer-360"),
            ("/settings/organization/gh/acme/runners", "runners-viewer-360"),
        ):
            page.goto(acme["url"] + path)
            assert page.locator("main button:not(.secondary)").count() == 0, path
            # Nothing wider than the screen: the page does not scroll sideways.
            assert page.evaluate("document.documentElement.scrollWidth") <= 360, path
            shot(page, name)
        assert re.search(r"vic", page.locator("header .login").inner_text())
        assert dialogs == []
    finally:
        context.close()
