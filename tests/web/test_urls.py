"""Every URL the API hands out for people (a job's ``web_url``, v1.1's ``build_url``, the actor's
avatar) opens a real page for a signed-in member."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from circlet.db.engine import Database
from circlet.settings import Settings
from tests.conftest import Team, app_client
from tests.pipelines.helpers import make_project, make_repo
from tests.web.helpers import signed_in
from tests.web.test_pipeline_pages import HELD, trigger


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_the_apis_urls_open_pages(settings: Settings, team: Team, database: Database, tmp_path: Path) -> None:
    make_repo(tmp_path / "repo", {".circleci/config.yml": HELD})
    slug = await make_project(database, team.admin, tmp_path / "repo")
    async with app_client(settings) as http:
        pipeline = await trigger(http, team.admin, slug)
        workflow = pipeline["workflows"][0]
        jobs = (await http.get(f"/api/v2/workflow/{workflow['id']}/job", headers=team.admin.headers)).json()["items"]
        numbered = next(job for job in jobs if job.get("job_number") is not None)
        number = numbered["job_number"]
        job = (await http.get(f"/api/v2/project/{slug}/job/{number}", headers=team.admin.headers)).json()
        build = (await http.get(f"/api/v1.1/project/{slug}/{number}", headers=team.admin.headers)).json()
        got = (await http.get(f"/api/v2/pipeline/{pipeline['id']}", headers=team.admin.headers)).json()
        urls = [job["web_url"], build["build_url"], got["trigger"]["actor"]["avatar_url"]]
        await signed_in(http, team.viewer.token)
        for url in urls:
            answer = await http.get(local(url))
            assert answer.status_code == 200, (url, answer.status_code)
        page = (await http.get(local(job["web_url"]))).text
        assert numbered["name"] in page
        # The job page's breadcrumb leads to the pipeline and project pages, which open too.
        for link in (f"/pipelines/{slug}/{pipeline['number']}", f"/pipelines/{slug}"):
            assert f'href="{link}"' in page and (await http.get(link)).status_code == 200
