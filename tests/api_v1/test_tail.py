"""The live tail of a step's output (``.../output/{step}/{index}/stream``, server-sent events), against
the real app: the test speaks the runner's side of the protocol and reads the stream straight from the
ASGI app, so it sees each event when the app sends it (httpx's ASGI transport would wait for the end)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.api_v1.service import split_incomplete
from circlet.db.engine import Database
from tests.conftest import Account, make_account
from tests.pipelines.helpers import ProtocolRunner, make_project, make_repo, runner_token

CONFIG = """
version: 2.1
jobs:
  build:
    docker: [{image: x}]
    steps: [checkout, {run: {name: Test, command: make test}}]
workflows:
  main:
    jobs: [build]
"""
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Event:
    kind: str
    id: int | None
    data: dict[str, Any]


@dataclass
class Stream:
    """One GET on the app, its response read message by message as the app sends it."""

    app: Any
    path: str
    headers: dict[str, str]
    sent: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    leave: asyncio.Event = field(default_factory=asyncio.Event)
    buffer: bytes = b""
    status: int = 0
    finished: bool = False

    def start(self) -> asyncio.Task[None]:
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("circlet.test", 80),
        }
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            await self.sent.put(message)

        return asyncio.create_task(self.app(scope, receive, send))

    async def _more(self, timeout: float) -> bool:
        message = await asyncio.wait_for(self.sent.get(), timeout)
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return True
        self.buffer += message.get("body", b"")
        self.finished = not message.get("more_body", False)
        return not self.finished or bool(self.buffer)

    async def event(self, timeout: float = 5.0) -> Event | None:
        """The next event (comments skipped), or None when the response has ended."""
        while True:
            while b"\n\n" not in self.buffer:
                if self.finished or not await self._more(timeout):
                    return None
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if not line.startswith(":"))
            if fields:
                event_id = int(fields["id"]) if "id" in fields else None
                return Event(fields["event"], event_id, json.loads(fields["data"]))

    async def rest(self) -> list[Event]:
        events = []
        while (event := await self.event()) is not None:
            events.append(event)
        return events


async def started_build(client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path) -> Any:
    """A project whose one job's task is claimed, its checkout done and its ``Test`` step running."""
    make_repo(tmp_path / "repo", {".circleci/config.yml": CONFIG})
    slug = await make_project(database, admin, tmp_path / "repo")
    runner = ProtocolRunner(client, await runner_token(database))
    await client.post(f"/api/v2/project/{slug}/pipeline", headers=admin.headers)
    task = await runner.claim(wait=5)
    assert task is not None
    for index, status in ((0, "success"), (1, "running")):
        event: dict[str, Any] = {"name": "x", "status": status, "started_at": "2026-01-01T00:00:00Z"}
        if status != "running":
            event |= {"exit_code": 0, "ended_at": "2026-01-01T00:00:01Z"}
        assert (await runner.call(task, f"steps/{index}", json=event)).status_code == 200
    return slug, runner, task


async def say(runner: ProtocolRunner, task: Any, data: bytes) -> None:
    assert (await runner.call(task, "steps/1/output", content=data, headers=OCTETS)).status_code == 200


async def end_step(runner: ProtocolRunner, task: Any, status: str = "failed", code: int = 2) -> None:
    event = {"name": "Test", "status": status, "exit_code": code, "started_at": "2026-01-01T00:00:00Z"}
    event["ended_at"] = "2026-01-01T00:00:02Z"
    assert (await runner.call(task, "steps/1", json=event)).status_code == 200


def text(events: list[Event]) -> str:
    return "".join(e.data["message"] for e in events if e.kind == "output")


async def test_a_running_step_is_tailed_as_it_prints_then_ends(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner, task = await started_build(client, database, admin, tmp_path)
    await say(runner, task, b"one\n")
    path = f"/api/v1.1/project/{slug}/1/output/1/0/stream"
    stream = Stream(client.app, path, admin.headers)  # type: ignore[attr-defined]
    running = stream.start()
    first = await stream.event()
    assert stream.status == 200
    assert first is not None and (first.kind, first.data["message"], first.data["type"]) == ("output", "one\n", "out")
    assert first.data["time"].endswith("Z")

    # Output that arrives later comes without asking; a character split between two uploads comes whole.
    await say(runner, task, b"two \xc3")
    second = await stream.event()
    assert second is not None and second.data["message"] == "two "
    await say(runner, task, b"\xa9t\xc3\xa9\n")
    third = await stream.event()
    assert third is not None and third.data["message"] == "\u00e9t\u00e9\n"
    assert first.id is not None and second.id is not None and third.id is not None
    assert first.id < second.id < third.id

    await end_step(runner, task)
    end = await stream.event()
    assert end is not None and (end.kind, end.id, end.data) == ("end", None, {"status": "failed", "exit_code": 2})
    assert await stream.event() is None
    await asyncio.wait_for(running, 5)

    # Reconnecting after any event gives exactly what followed it, the split character whole again.
    for seen, expected in ((first, "two \u00e9t\u00e9\n"), (second, "\u00e9t\u00e9\n"), (third, "")):
        again = await client.get(path, headers={**admin.headers, "Last-Event-ID": str(seen.id)}, params={"after": 0})
        assert again.status_code == 200 and again.headers["content-type"].startswith("text/event-stream")
        replay = Stream(client.app, f"{path}?after={seen.id}", admin.headers)  # type: ignore[attr-defined]
        replay.start()
        events = await replay.rest()
        assert text(events) == expected and events[-1].kind == "end"
        later = [event_id for event_id in (second.id, third.id) if event_id > (seen.id or 0)]
        assert [e.id for e in events if e.kind == "output"] == later
        assert again.text.count("event: end") == 1 and f"id: {seen.id}\n" not in again.text

    # The whole output, the way output_url gives it, matches what the tail gave.
    whole = await client.get(f"/api/v1.1/project/{slug}/1/output/1/0", headers=admin.headers)
    assert whole.json()[0]["message"] == "one\ntwo \u00e9t\u00e9\n"


async def test_a_tail_ends_when_the_client_leaves_or_the_server_shuts_down(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner, task = await started_build(client, database, admin, tmp_path)
    path = f"/api/v1.1/project/{slug}/1/output/1/0/stream"
    app = client.app  # type: ignore[attr-defined]
    leaving = Stream(app, path, admin.headers)
    running = leaving.start()
    await say(runner, task, b"hello\n")
    assert (event := await leaving.event()) is not None and event.data["message"] == "hello\n"
    leaving.leave.set()
    await asyncio.wait_for(running, 3)

    staying = Stream(app, path, admin.headers)
    running = staying.start()
    assert (event := await staying.event()) is not None and event.data["message"] == "hello\n"
    app.state.task_signal.close()  # what `circlet serve` does when shutdown begins
    await asyncio.wait_for(running, 3)
    assert await staying.event() is None  # ended, without an `end`: the step has not ended


async def test_a_task_that_ends_under_a_step_ends_its_tail(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, runner, task = await started_build(client, database, admin, tmp_path)
    await say(runner, task, b"partial")
    assert (await runner.call(task, "complete", json={"status": "infrastructure_fail"})).status_code == 200
    response = await client.get(f"/api/v1.1/project/{slug}/1/output/1/0/stream", headers=admin.headers)
    assert response.status_code == 200
    assert response.text.endswith('event: end\ndata: {"status":"infrastructure_fail","exit_code":null}\n\n')
    assert "partial" in response.text


async def test_a_tail_is_for_those_who_may_see_the_job(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    slug, _, _ = await started_build(client, database, admin, tmp_path)
    path = f"/api/v1.1/project/{slug}/1/output/1/0/stream"
    outsider = await make_account(database)
    refused = await client.get(path, headers=outsider.headers)
    assert refused.status_code == 404 and "message" in refused.json()
    anonymous = await client.get(path)
    assert anonymous.status_code == 401 and "message" in anonymous.json()
    for missing in (
        f"/api/v1.1/project/{slug}/1/output/2/0/stream",  # the job has two steps
        f"/api/v1.1/project/{slug}/1/output/1/1/stream",  # and one parallel run
        f"/api/v1.1/project/{slug}/9/output/1/0/stream",
    ):
        response = await client.get(missing, headers=admin.headers)
        assert response.status_code == 404 and "message" in response.json(), missing
    for bad in ({"Last-Event-ID": "x"}, {"Last-Event-ID": "-1"}):
        response = await client.get(path, headers={**admin.headers, **bad})
        assert response.status_code == 400 and "message" in response.json()
    response = await client.get(path + "?after=1e3", headers=admin.headers)
    assert response.status_code == 400 and "message" in response.json()


@pytest.mark.parametrize(
    ("data", "kept", "held"),
    [
        (b"abc", b"abc", b""),
        (b"ab\xc3", b"ab", b"\xc3"),
        (b"\xe2\x82", b"", b"\xe2\x82"),
        (b"\xe2\x82\xac", b"\xe2\x82\xac", b""),
        (b"x\xf0\x9f\x98", b"x", b"\xf0\x9f\x98"),
        (b"\x80\x80\x80\x80", b"\x80\x80\x80\x80", b""),  # not UTF-8 at all: nothing to wait for
        (b"", b"", b""),
    ],
)
def test_split_incomplete(data: bytes, kept: bytes, held: bytes) -> None:
    assert split_incomplete(data) == (kept, held)
