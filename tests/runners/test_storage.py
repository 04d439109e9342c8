"""The storage calls of docs/runner-protocol.md over HTTP (caches, workspace layers, artifacts, test
results), and the Job reads that serve what they stored."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update

from circlet.blobs import FileBlobStore
from circlet.db.engine import Database
from circlet.db.models import Cache
from circlet.db.types import utcnow
from circlet.storage.sweeper import BlobSweeper
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token

CHAIN = """
version: 2.1
jobs:
  a: {docker: [{image: x}], steps: [{run: echo}]}
  b: {docker: [{image: x}], steps: [{run: echo}]}
  c: {docker: [{image: x}], steps: [{run: echo}]}
workflows:
  main:
    jobs: [a, {b: {requires: [a]}}, {c: {requires: [b]}}]
"""


class Storage:
    """The runner's storage calls for one claimed task."""

    def __init__(self, http: httpx.AsyncClient, task: dict[str, Any]):
        self.http = http
        self.base = f"/api/v3/runner/tasks/{task['task_id']}"
        self.headers = {"Authorization": f"Bearer {task['task_token']}"}

    async def put(self, call: str, body: bytes, **params: str) -> httpx.Response:
        return await self.http.put(self.base + call, content=body, params=params, headers=self.headers)

    async def get(self, call: str, **params: str) -> httpx.Response:
        return await self.http.get(self.base + call, params=params, headers=self.headers)


async def setup(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> tuple[str, ProtocolRunner]:
    make_repo(tmp_path / "repo", {".circleci/config.yml": CHAIN})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
    return slug, runner


async def next_task(runner: ProtocolRunner, name: str) -> tuple[dict[str, Any], Storage]:
    task = await runner.claim(wait=5)
    assert task is not None and task["job"]["name"] == name
    return task, Storage(runner.http, task)


async def test_caches_are_immutable_and_restored_by_newest_prefix(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    _, runner = await setup(client, database, admin, tmp_path)
    task, storage = await next_task(runner, "a")
    key = "v1-deps/main+ab=="  # base64 checksums hold '/', '+' and '='
    assert (await storage.put(f"/caches/{httpx.URL(key).raw_path.decode()}", b"one")).status_code == 201
    refused = await storage.put("/caches/v1-deps%2Fmain%2Bab%3D%3D", b"two")
    assert refused.status_code == 409 and "immutable" in refused.json()["message"]
    assert (await storage.put("/caches/v1-deps%2Fmain-newer", b"three")).status_code == 201
    assert (
        await storage.http.head(storage.base + "/caches/v1-deps%2Fmain%2Bab%3D%3D", headers=storage.headers)
    ).status_code == 200
    assert (await storage.http.head(storage.base + "/caches/v1-deps", headers=storage.headers)).status_code == 404

    found = await storage.get("/caches", keys="nothing,v1-deps/,v1")
    assert found.json() == {"key": "v1-deps/main-newer"}
    assert (await storage.get("/caches", keys="V1-DEPS")).status_code == 404  # case-sensitive
    assert (await storage.get("/caches", keys="v1_%")).status_code == 404  # no LIKE wildcards
    restored = await storage.get("/caches/v1-deps%2Fmain%2Bab%3D%3D")
    assert restored.content == b"one" and restored.headers["content-length"] == "3"  # unframed: cheaper to read
    assert (await storage.get("/caches/absent")).status_code == 404

    stranger = await storage.http.get(storage.base + "/caches", params={"keys": "v1"})
    assert stranger.status_code == 401
    await runner.finish(task)
    assert (await storage.get("/caches", keys="v1")).status_code == 409  # the task token ended with the task


async def test_workspace_layers_follow_requirements_and_reruns(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner = await setup(client, database, admin, tmp_path)
    layers: dict[str, list[str]] = {}
    for name in ("a", "b", "c"):
        task, storage = await next_task(runner, name)
        visible = (await storage.get("/workspace")).json()
        layers[name] = [(await storage.get(f"/workspace/{layer}")).content.decode() for layer in visible]
        assert (await storage.put("/workspace", f"layer-{name}".encode())).status_code == 201
        await runner.finish(task)
    assert layers == {"a": [], "b": ["layer-a"], "c": ["layer-a", "layer-b"]}

    workflows = (
        await client.get(f"/api/v2/pipeline/{(await pipeline_id(client, slug, admin))}/workflow", headers=admin.headers)
    ).json()
    workflow_id = workflows["items"][0]["id"]
    jobs = (await client.get(f"/api/v2/workflow/{workflow_id}/job", headers=admin.headers)).json()["items"]
    c_id = next(job["id"] for job in jobs if job["name"] == "c")
    rerun = await client.post(f"/api/v2/workflow/{workflow_id}/rerun", json={"jobs": [c_id]}, headers=admin.headers)
    assert rerun.status_code == 202, rerun.text
    task, storage = await next_task(runner, "c")
    visible = (await storage.get("/workspace")).json()
    assert [(await storage.get(f"/workspace/{layer}")).content for layer in visible] == [b"layer-a", b"layer-b"]
    assert (await storage.get(f"/workspace/{task['task_id']}")).status_code == 404
    await runner.finish(task)


async def pipeline_id(client: httpx.AsyncClient, slug: str, admin: Account) -> str:
    return str((await client.get(f"/api/v2/project/{slug}/pipeline/1", headers=admin.headers)).json()["id"])


async def test_artifacts_refuse_traversal_and_are_served_to_members_only(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner = await setup(client, database, admin, tmp_path)
    viewer = await make_account(database, org=admin.org_slug.rsplit("/", 1)[-1], role="viewer")
    outsider = await make_account(database)
    task, storage = await next_task(runner, "a")
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b", "a/..", "x" * 1025, "a\\b", "nul\x00", ""):
        refused = await storage.put("/artifacts", b"x", path=bad)
        assert refused.status_code == 400 and "message" in refused.json(), (bad, refused.text)
    for path in ("report.html", "logs/a b.txt", 'page "1".html'):
        assert (await storage.put("/artifacts", path.encode(), path=path)).status_code == 201
    await runner.finish(task)

    listing = (await client.get(f"/api/v2/project/{slug}/1/artifacts", headers=admin.headers)).json()
    assert listing["next_page_token"] is None
    assert [(item["path"], item["node_index"]) for item in listing["items"]] == [
        ("report.html", 0),
        ("logs/a b.txt", 0),
        ('page "1".html', 0),
    ]
    for item, disposition in zip(
        listing["items"],
        (
            'attachment; filename="report.html"',
            "attachment; filename*=UTF-8''a%20b.txt",
            "attachment; filename*=UTF-8''page%20%221%22.html",
        ),
        strict=True,
    ):
        served = await client.get(httpx.URL(item["url"]).raw_path.decode(), headers=admin.headers)
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert served.headers["content-disposition"] == disposition
    url = listing["items"][1]["url"]
    assert url.endswith(f"/api/v2/project/{slug}/1/artifacts/0/logs/a b.txt")
    path = httpx.URL(url).raw_path.decode()
    assert (await client.get(path, headers=viewer.headers)).content == b"logs/a b.txt"
    assert (await client.get(path, headers=outsider.headers)).status_code == 404
    assert (await client.get(path.replace("a%20b", "nope"), headers=admin.headers)).status_code == 404
    assert (
        await client.get(f"/api/v2/project/{slug}/1/artifacts/0/..%2F..%2Fx", headers=admin.headers)
    ).status_code == 404
    assert (await client.get(f"/api/v2/project/{slug}/2/artifacts", headers=admin.headers)).json()["items"] == []


async def test_test_results_are_parsed_and_bad_xml_refused(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner = await setup(client, database, admin, tmp_path)
    task, storage = await next_task(runner, "a")
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    for bad in (b"", b"not xml", b"<testsuite>", bomb, b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>'):
        refused = await storage.put("/tests", bad, source="unit")
        assert refused.status_code == 400 and "message" in refused.json(), (bad, refused.text)
    xml = b"""<testsuites><testsuite name="s" file="spec/a_spec.rb">
      <testcase classname="A" name="works" time="0.5"/>
      <testcase classname="A" name="breaks" time="x"><error message="boom">trace</error></testcase>
      <testcase classname="A" name="later"><skipped message="wip"/></testcase>
    </testsuite></testsuites>"""
    stored = await storage.put("/tests", xml, source="rspec")
    assert stored.status_code == 201 and stored.json() == {"tests": 3}
    await runner.finish(task)

    body = (await client.get(f"/api/v2/project/{slug}/1/tests", headers=admin.headers)).json()
    assert body == {
        "items": [
            {
                "message": None,
                "source": "rspec",
                "run_time": 0.5,
                "file": "spec/a_spec.rb",
                "result": "success",
                "name": "works",
                "classname": "A",
            },
            {
                "message": "trace",
                "source": "rspec",
                "run_time": 0.0,
                "file": "spec/a_spec.rb",
                "result": "failure",
                "name": "breaks",
                "classname": "A",
            },
            {
                "message": "wip",
                "source": "rspec",
                "run_time": 0.0,
                "file": "spec/a_spec.rb",
                "result": "skipped",
                "name": "later",
                "classname": "A",
            },
        ],
        "next_page_token": None,
    }
    bad_token = await client.get(
        f"/api/v2/project/{slug}/1/tests", params={"page-token": "nope"}, headers=admin.headers
    )
    assert bad_token.status_code == 400


async def test_the_blob_sweep_deletes_only_unrecorded_old_bytes_and_expired_caches(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner = await setup(client, database, admin, tmp_path)
    task, storage = await next_task(runner, "a")
    assert (await storage.put("/caches/v1-kept", b"cache bytes")).status_code == 201
    assert (await storage.put("/workspace", b"layer bytes")).status_code == 201
    assert (await storage.put("/artifacts", b"artifact bytes", path="out.txt")).status_code == 201
    await runner.finish(task)

    blobs: FileBlobStore = client.app.state.storage_service.blobs  # type: ignore[attr-defined]
    sweeper: BlobSweeper = client.app.state.blob_sweeper  # type: ignore[attr-defined]
    two_days_ago = time.time() - 2 * 86400

    async def put(content: bytes) -> str:
        async def body() -> AsyncIterator[bytes]:
            yield content

        return (await blobs.put(body())).id

    orphan, young_orphan = await put(b"nobody records this"), await put(b"about to be recorded")
    stale_part, live_part = blobs.root / "tmp" / "dead.part", blobs.root / "tmp" / "live.part"
    stale_part.write_bytes(b"a crash left this")
    live_part.write_bytes(b"a put is writing this")
    for path in [*blobs.root.glob("??/*"), stale_part]:
        if path.name != young_orphan:
            os.utime(path, (two_days_ago, two_days_ago))
    recorded = {path.name for path in blobs.root.glob("??/*")} - {orphan, young_orphan}
    assert len(recorded) == 3

    assert await sweeper.sweep() == (0, 1)
    assert {path.name for path in blobs.root.glob("??/*")} == recorded | {young_orphan}
    assert not stale_part.exists() and live_part.exists()
    artifact = (await client.get(f"/api/v2/project/{slug}/1/artifacts", headers=admin.headers)).json()["items"][0]
    assert (await client.get(artifact["url"], headers=admin.headers)).content == b"artifact bytes"

    async with database.writing() as session:  # the cache saved 16 days ago: past the 15-day retention
        await session.execute(update(Cache).values(created_at=utcnow() - timedelta(days=16)))
    assert await sweeper.sweep() == (1, 1)
    assert len({path.name for path in blobs.root.glob("??/*")} & recorded) == 2
    task, storage = await next_task(runner, "b")
    assert (await storage.get("/caches", keys="v1")).status_code == 404
    visible = (await storage.get("/workspace")).json()
    assert [(await storage.get(f"/workspace/{layer}")).content for layer in visible] == [b"layer bytes"]
    await runner.finish(task)

    assert (await client.delete(f"/api/v2/project/{slug}", headers=admin.headers)).status_code == 200
    assert await sweeper.sweep() == (0, 2)
    assert {path.name for path in blobs.root.glob("??/*")} == {young_orphan}
