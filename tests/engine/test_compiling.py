"""The compile pool: real worker processes; one organization's burst leaves room for another's,
in order; a compile past the timeout is killed and its worker replaced."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from circlet.config import ExpansionLimits
from circlet.engine.compiling import CompilePool, CompileRefused, CompileRequest
from circlet.engine.loops import error_lines

RAISED = ExpansionLimits(matrix_combinations=10**7, jobs_per_workflow=10**7, jobs_per_pipeline=10**7)


def matrix(a: int, b: int) -> str:
    values = ", ".join(map(str, range(a))), ", ".join(map(str, range(b)))
    return f"""version: 2.1
jobs:
  build: {{docker: [{{image: x}}], parameters: {{a: {{type: integer}}, b: {{type: integer}}}}, steps: [{{run: x}}]}}
workflows:
  w:
    jobs: [{{build: {{matrix: {{parameters: {{a: [{values[0]}], b: [{values[1]}]}}}}}}}}]
"""


@pytest.fixture
async def pool() -> CompilePool:
    pool = CompilePool(workers=2, timeout_seconds=60, memory_bytes=0, per_org=1)
    yield pool  # type: ignore[misc]
    pool.close()


async def test_one_org_burst_queues_in_order_and_leaves_a_worker_for_another(pool: CompilePool) -> None:
    heavy, light = uuid.uuid4(), uuid.uuid4()
    finished: list[str] = []

    async def compile_as(org: uuid.UUID, name: str, source: str) -> None:
        await pool.compile(org, CompileRequest(source, limits=RAISED))
        finished.append(name)

    burst = [asyncio.create_task(compile_as(heavy, f"heavy-{n}", matrix(60, 60))) for n in range(3)]
    await asyncio.sleep(0.05)
    await compile_as(light, "light", matrix(1, 1))
    assert finished[0] == "light"  # not behind the three heavy ones
    await asyncio.gather(*burst)
    assert finished[1:] == ["heavy-0", "heavy-1", "heavy-2"]


async def test_a_compile_past_the_timeout_is_killed_and_the_worker_replaced() -> None:
    pool = CompilePool(workers=1, timeout_seconds=1, memory_bytes=0, per_org=1)
    try:
        org = uuid.uuid4()
        started = time.monotonic()
        with pytest.raises(CompileRefused) as caught:
            await pool.compile(org, CompileRequest(matrix(1000, 1000), limits=RAISED))
        assert time.monotonic() - started < 10
        assert caught.value.kind == "timeout"
        assert caught.value.errors == [
            "compiling the config took longer than the limit of 1 s (compile_timeout_seconds): it was stopped"
        ]
        compiled = await pool.compile(org, CompileRequest(matrix(2, 2)))
        assert [job.name for job in compiled.config.workflows[0].jobs] == [
            "build-0-0",
            "build-0-1",
            "build-1-0",
            "build-1-1",
        ]
    finally:
        pool.close()


async def test_invalid_configs_come_back_as_located_lines(pool: CompilePool) -> None:
    with pytest.raises(CompileRefused) as caught:
        await pool.compile(uuid.uuid4(), CompileRequest("version: 2.1\nworkflows: {w: {jobs: [nope]}}\n", "x.yml"))
    assert caught.value.errors == ["x.yml:2:24: workflows.w.jobs[0]: job 'nope' is not defined"]


def test_error_lines_keep_the_first_hundred() -> None:
    lines = [f"c.yml:{n}:1: e: bad" for n in range(1, 151)]
    stored = error_lines(lines).split("\n")
    assert stored[:100] == lines[:100] and stored[100:] == ["and 50 more"]
    assert error_lines(lines[:3]) == "\n".join(lines[:3])


async def test_a_worker_that_died_idle_is_replaced_without_failing_the_compile(pool: CompilePool) -> None:
    org = uuid.uuid4()
    await pool.warm()
    for worker in pool._idle:
        worker.process.kill()
        worker.process.wait()
    compiled = await pool.compile(org, CompileRequest(matrix(1, 1)))
    assert [job.name for job in compiled.config.workflows[0].jobs] == ["build-0-0"]
