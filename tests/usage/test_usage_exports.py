"""Usage exports: the background writer's CSV against the rows seeded, the signed download, refusals."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from circlet.db.engine import Database
from circlet.settings import Settings
from circlet.usage.service import COLUMNS
from tests.conftest import Account, make_account
from tests.insights.seed import Seeder, add_project

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"insights_credits_per_minute": "medium=10"})


async def seed(database: Database, account: Account) -> None:
    async with database.writing() as session:
        project = await add_project(session, account.org_id)
        seeder = Seeder(session, project.id)
        await seeder.run("build", "success", NOW - timedelta(days=2), 120, jobs={"test": "success", "lint": "success"})
        await seeder.run("build", "failed", NOW - timedelta(days=1), 90, branch="dev")
        await seeder.run("build", "success", NOW - timedelta(days=40), 60)  # before the range


async def wait_done(client: httpx.AsyncClient, account: Account, export_id: str) -> dict[str, Any]:
    for _ in range(200):
        response = await client.get(
            f"/api/v2/organizations/{account.org_id}/usage_export_job/{export_id}", headers=account.headers
        )
        assert response.status_code == 200, response.text
        if response.json()["state"] in ("completed", "failed"):
            return dict(response.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the export did not finish")


async def test_export_writes_one_row_per_job_run(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    await seed(database, account)
    start, end = NOW - timedelta(days=30), NOW
    response = await client.post(
        f"/api/v2/organizations/{account.org_id}/usage_export_job",
        json={"start": start.isoformat(), "end": end.isoformat()},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["state"] == "processing" and created["download_urls"] == []
    done = await wait_done(client, account, created["usage_export_job_id"])
    assert done["state"] == "completed", done
    [url] = done["download_urls"]
    parts = urlsplit(url)
    download = await client.get(f"{parts.path}?{parts.query}")  # no token
    assert download.status_code == 200 and download.headers["content-type"] == "application/gzip"
    text = gzip.decompress(download.content).decode()
    rows = list(csv.reader(io.StringIO(text), quoting=csv.QUOTE_NONE, escapechar="\\"))
    assert tuple(rows[0]) == COLUMNS and len(COLUMNS) == 48
    records = [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]
    assert sorted((r["JOB_NAME"], r["VCS_BRANCH"], r["JOB_BUILD_STATUS"]) for r in records) == [
        ("lint", "main", "success"),
        ("test", "dev", "failed"),
        ("test", "main", "success"),
    ]
    failed = next(r for r in records if r["JOB_BUILD_STATUS"] == "failed")
    assert failed["JOB_RUN_SECONDS"] == "90" and failed["PARALLELISM"] == "2"
    assert failed["COMPUTE_CREDITS"] == failed["TOTAL_CREDITS"] == "30.0000"  # 1.5 min × 2 × 10
    assert failed["IS_WORKFLOW_SUCCESSFUL"] == "false" and failed["MEDIAN_CPU_UTILIZATION_PCT"] == "\\N"
    assert failed["ORGANIZATION_ID"] == account.org_id and failed["PROJECT_NAME"] == "app"
    assert failed["RESOURCE_CLASS"] == "medium" and failed["OPERATING_SYSTEM"] == "linux"

    tampered = await client.get(f"{parts.path}?{parts.query.replace('signature=', 'signature=0')}")
    assert tampered.status_code == 401 and tampered.json()["message"]


async def test_refusals(client: httpx.AsyncClient, database: Database) -> None:
    account = await make_account(database)
    member = await make_account(database, org=account.org_slug.split("/")[1], role="member")
    outsider = await make_account(database)
    path = f"/api/v2/organizations/{account.org_id}/usage_export_job"
    good = {"start": (NOW - timedelta(days=3)).isoformat(), "end": NOW.isoformat()}
    assert (await client.post(path, json=good, headers=outsider.headers)).status_code == 404
    assert (await client.post(path, json=good, headers=member.headers)).status_code == 403
    for body in (
        {**good, "extra": 1},
        {"start": good["start"]},
        {"start": (NOW - timedelta(days=400)).isoformat(), "end": (NOW - timedelta(days=390)).isoformat()},
        {"start": (NOW - timedelta(days=40)).isoformat(), "end": NOW.isoformat()},
        {"start": NOW.isoformat(), "end": (NOW - timedelta(days=1)).isoformat()},
    ):
        response = await client.post(path, json=body, headers=account.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["message"]
    shared = {**good, "shared_org_ids": [outsider.org_id]}
    assert (await client.post(path, json=shared, headers=account.headers)).status_code == 404
    created = (await client.post(path, json=good, headers=account.headers)).json()
    other = f"/api/v2/organizations/{outsider.org_id}/usage_export_job/{created['usage_export_job_id']}"
    assert (await client.get(other, headers=outsider.headers)).status_code == 404
    await wait_done(client, account, created["usage_export_job_id"])
