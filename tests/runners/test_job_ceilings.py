"""What one job may store is bounded: test results, artifacts and step output have ceilings with
clear refusals; JUnit fields are truncated and parsed rows leave the parser as they complete."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from circlet.db.engine import Database
from circlet.engine import repository as engine
from circlet.storage.junit import MAX_FIELD, MAX_TEXT, JUnitParser
from tests.conftest import Account
from tests.runners.test_storage import next_task, setup


def test_rows_leave_the_parser_as_each_test_case_ends() -> None:
    parser = JUnitParser()
    assert parser.feed(b'<testsuite><testcase name="a"/><testcase name="b">') == [
        {"name": "a", "classname": "", "file": None, "run_time": 0.0, "result": "success", "message": None}
    ]
    assert [row["name"] for row in parser.feed(b"</testcase>")] == ["b"]
    assert parser.feed(b'<testcase name="c"/></testsuite>')[0]["name"] == "c"
    assert parser.close() == []


def test_every_long_field_is_truncated() -> None:
    long = "m" * (MAX_TEXT + 10)
    parser = JUnitParser()
    rows = parser.feed(
        f'<testsuite><testcase name="{"n" * 2000}" classname="{"c" * 2000}" file="{"f" * 2000}">'
        f'<failure message="{long}"/></testcase></testsuite>'.encode()
    )
    [row] = rows + parser.close()
    assert len(row["name"]) == len(row["classname"]) == len(row["file"]) == MAX_FIELD
    assert row["message"] == long[:MAX_TEXT]


async def test_test_results_artifacts_and_output_past_a_jobs_ceiling_are_refused(
    client: httpx.AsyncClient, database: Database, admin: Account, tmp_path: Path
) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    state.storage_service.test_results_per_job = 3
    state.storage_service.artifacts_per_job = 2
    state.runner_service.step_output_bytes = 10
    _, runner = await setup(client, database, admin, tmp_path)
    task, storage = await next_task(runner, "a")

    two = b'<testsuite><testcase name="a"/><testcase name="b"/></testsuite>'
    assert (await storage.put("/tests", two, source="unit")).json() == {"tests": 2}
    refused = await storage.put("/tests", two, source="unit")
    assert refused.status_code == 413
    assert refused.json() == {
        "message": "A job keeps at most 3 test results (test_results_per_job): 2 are stored, this file has 2."
    }

    for name in ("a.txt", "b.txt"):
        assert (await storage.put("/artifacts", b"x", path=name)).status_code == 201
    refused = await storage.put("/artifacts", b"x", path="c.txt")
    assert refused.status_code == 413
    assert refused.json() == {"message": "A job keeps at most 2 artifacts (artifacts_per_job)."}

    for chunk in (b"12345", b"6789", b"abc", b"def"):
        sent = await runner.call(
            task, "steps/0/output", content=chunk, headers={"Content-Type": "application/octet-stream"}
        )
        assert sent.status_code == 200  # the job runs on
    async with database.reading() as session:
        output = await engine.output_of(session, uuid.UUID(task["task_id"]), 0)
    marker = b"[circlet: this job's output passed 10 bytes (step_output_bytes_per_task); the rest is not kept]"
    assert output == b"123456789\n" + marker + b"\n"
    await runner.finish(task)
