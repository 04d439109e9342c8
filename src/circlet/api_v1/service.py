"""API v1.1 reads of a job, in CircleCI's v1.1 build shape, over the Job tag's lookups: the same
authorisation (404 for a project the caller may not see) and the same job-by-number rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.api_v1 import repository as tails
from circlet.api_v1.signed_urls import INVALID, OutputUrlSigner
from circlet.auth import Principal
from circlet.db.models import Job, StepRun
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.http.errors import NotFound, Unauthorized
from circlet.http.responses import timestamp
from circlet.jobs.service import JobService
from circlet.pipelines.service import slug_of
from circlet.users import repository as users

# Job status -> (v1.1 status, lifecycle). A job still waiting (blocked, on hold) is queued.
STATUS = {
    states.BLOCKED: ("queued", "queued"),
    states.QUEUED: ("queued", "queued"),
    states.ON_HOLD: ("queued", "queued"),
    states.RUNNING: ("running", "running"),
    states.SUCCESS: ("success", "finished"),
    states.FAILED: ("failed", "finished"),
    states.CANCELED: ("canceled", "finished"),
    states.TIMEDOUT: ("timedout", "finished"),
    states.INFRASTRUCTURE_FAIL: ("infrastructure_fail", "finished"),
    states.UNAUTHORIZED: ("failed", "finished"),
    states.NOT_RUN: ("not_run", "not_run"),
}
# Step statuses a runner reports that v1.1 has no word for.
STEP_STATUS = {"skipped": "not_run"}
MISSING_OUTPUT = "Step output not found."
# Rows read per query of a tail: a step that printed a lot is sent in batches, not in one read.
TAIL_BATCH = 256
# Task statuses after which no more output or step events can come for it.
TASK_ACTIVE = frozenset({states.QUEUED, states.RUNNING})


def split_incomplete(data: bytes) -> tuple[bytes, bytes]:
    """``data`` cut before a UTF-8 sequence it ends in the middle of: the runner sends bytes as they
    come, so a character may straddle two rows, and decoding each row alone would garble it."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: its sequence starts further back
            continue
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        return (data[:-back], data[-back:]) if needed > back else (data, b"")
    return data, b""


@dataclass
class TailCursor:
    """Where a tail is: the id of the last row sent (the SSE event id) and the bytes of a character
    that row ended in the middle of, which go out with the next row."""

    after: int
    pending: bytes = b""
    time: datetime | None = None


@dataclass(frozen=True)
class TailPoll:
    events: list[tuple[int, dict[str, Any]]]
    """(row id, ``{"message", "type", "time"}``), the shape of ``output_url``'s items."""
    end: dict[str, Any] | None
    """``{"status", "exit_code"}`` once the step (or its task) has ended and everything is sent."""
    more: bool
    """A full batch was read: poll again at once."""


def _time(value: datetime | None) -> str | None:
    return timestamp(value) if value else None


def _millis(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


@dataclass
class LegacyService:
    job_service: JobService
    base_url: str
    output_urls: OutputUrlSigner

    async def _ran(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int
    ) -> tuple[Job, Job, Any]:
        """The job a number names, and the job that ran for it (a rerun's carried-over job stands for
        its original, whose steps it shows)."""
        job, found = await self.job_service.by_number(session, principal, slug, number)
        ran = job
        if job.reused_from is not None:
            ran = await engine.get_job(session, job.reused_from) or job
        return job, ran, found

    async def build(
        self, session: AsyncSession, principal: Principal, slug: tuple[str, str, str], number: int
    ) -> dict[str, Any]:
        job, ran, found = await self._ran(session, principal, slug, number)
        workflow = await engine.get_workflow(session, job.workflow_id)
        pipeline = await engine.get_pipeline(session, job.pipeline_id)
        assert workflow is not None and pipeline is not None
        tasks = await engine.tasks_of(session, [ran.id])
        index_of = {task.id: task.parallel_index for task in tasks}
        task_ids = list(index_of)
        runs = await engine.steps_of(session, task_ids)
        with_output = await engine.steps_with_output(session, task_ids)
        project_slug = slug_of(found.project, found.org)
        status, lifecycle = STATUS.get(job.status, (job.status, "finished"))
        path = f"/api/v1.1/project/{'/'.join(slug)}/{number}/output"
        names = [step.get("name") or step.get("type", "") for step in ran.spec.get("steps", [])]
        by_step: dict[int, list[StepRun]] = {}
        for run in runs:
            by_step.setdefault(run.step_index, []).append(run)
        steps = []
        for step_index in sorted(by_step):
            actions = []
            for run in sorted(by_step[step_index], key=lambda run: index_of[run.task_id]):
                index = index_of[run.task_id]
                url = None
                if (run.task_id, step_index) in with_output:
                    output = f"{path}/{step_index}/{index}"
                    url = f"{self.base_url}{output}?{self.output_urls.query(output, principal.user_id)}"
                actions.append(self._action(run, index, url))
            fallback = names[step_index] if step_index < len(names) else ""
            steps.append({"name": by_step[step_index][0].name or fallback, "actions": actions})
        return {
            "build_num": job.number,
            "build_url": (
                f"{self.base_url}/pipelines/{project_slug}/{pipeline.number}/workflows/{workflow.id}/jobs/{job.number}"
            ),
            "vcs_url": pipeline.vcs_url,
            "username": found.org.name,
            "reponame": found.project.name,
            "status": status,
            "lifecycle": lifecycle,
            "outcome": status if lifecycle == "finished" else None,
            "queued_at": _time(job.queued_at),
            "start_time": _time(job.started_at),
            "stop_time": _time(job.stopped_at),
            "build_time_millis": _millis(job.started_at, job.stopped_at),
            "parallel": job.parallelism,
            "branch": pipeline.branch,
            "vcs_tag": pipeline.tag,
            "vcs_revision": pipeline.revision,
            "subject": pipeline.commit_subject,
            "body": pipeline.commit_body,
            "why": None,
            "workflows": {
                "job_name": job.name,
                "job_id": job.id,
                "workflow_id": workflow.id,
                "workflow_name": workflow.name,
                "pipeline_id": pipeline.id,
                "pipeline_number": pipeline.number,
            },
            "steps": steps,
        }

    @staticmethod
    def _action(run: StepRun, index: int, output_url: str | None) -> dict[str, Any]:
        status = STEP_STATUS.get(run.status, run.status)
        return {
            "index": index,
            "step": run.step_index,
            "name": run.name,
            "status": status,
            "exit_code": run.exit_code,
            "start_time": _time(run.started_at),
            "end_time": _time(run.ended_at),
            "run_time_millis": _millis(run.started_at, run.ended_at),
            "has_output": output_url is not None,
            "output_url": output_url,
            "failed": True if status == "failed" else None,
            "timedout": True if status == "timedout" else None,
            "canceled": True if status == "canceled" else None,
        }

    @staticmethod
    async def signed_reader(session: AsyncSession, user_id: uuid.UUID) -> Principal:
        """The user a signed output URL acts for, with their memberships as they are now."""
        user = await users.get_user(session, user_id)
        if user is None:
            raise Unauthorized(INVALID)
        roles = await users.roles_of(session, user_id)
        # No token was used: the nil token id (nothing audits a read of output).
        return Principal(user.id, user.login, user.name, user.avatar_url, uuid.UUID(int=0), roles)

    async def output(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        step: int,
        index: int,
    ) -> list[dict[str, Any]]:
        """A step's output of one parallel index, as one message: ``[]`` when it printed nothing."""
        data, run = await self.step_output(session, principal, slug, number, step, index)
        return [_message(data, run.ended_at or run.started_at)] if data else []

    async def step_output(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        step: int,
        index: int,
    ) -> tuple[bytes, StepRun]:
        """A step's output of one parallel index, and that step's run; 404 where the step did not run."""
        _, ran, _ = await self._ran(session, principal, slug, number)
        task = next((task for task in await engine.tasks_of(session, [ran.id]) if task.parallel_index == index), None)
        run = await self._step_run(session, task.id, step) if task is not None else None
        if task is None or run is None:
            raise NotFound(MISSING_OUTPUT)
        return await engine.output_of(session, task.id, step), run

    @staticmethod
    async def _step_run(session: AsyncSession, task_id: uuid.UUID, step: int) -> StepRun | None:
        return next((run for run in await engine.steps_of(session, [task_id]) if run.step_index == step), None)

    async def tail_target(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        number: int,
        step: int,
        index: int,
    ) -> uuid.UUID:
        """The task whose step a tail follows; 404 for a step or parallel index the job does not have
        (a step that has not started yet is fine: the tail waits for it)."""
        _, ran, _ = await self._ran(session, principal, slug, number)
        task = next((task for task in await engine.tasks_of(session, [ran.id]) if task.parallel_index == index), None)
        if task is None or not 0 <= step < len(ran.spec.get("steps", [])):
            raise NotFound(MISSING_OUTPUT)
        return task.id

    @staticmethod
    async def tail_start(session: AsyncSession, task_id: uuid.UUID, step: int, after: int) -> TailCursor:
        """A cursor resuming after row ``after``: the rows up to it may end in a split character,
        whose first bytes were held back and must go out with the next row."""
        if after <= 0:
            return TailCursor(0)
        # A held-back tail is at most 3 bytes and every row has at least one: 3 rows hold it.
        before = b"".join(await tails.chunks_up_to(session, task_id, step, after, 3))
        return TailCursor(after, split_incomplete(before)[1])

    @staticmethod
    async def tail_poll(session: AsyncSession, task_id: uuid.UUID, step: int, cursor: TailCursor) -> TailPoll:
        """The output after ``cursor`` (advanced in place) and, when the step has ended, its status.

        The state is read before the rows: the runner sends a step's output before the event that
        ends it, so rows read after an ended state are all there will be."""
        state = await tails.step_state(session, task_id, step)
        chunks = await tails.chunks_after(session, task_id, step, cursor.after, TAIL_BATCH)
        events = []
        for chunk in chunks:
            data, pending = split_incomplete(cursor.pending + chunk.data)
            cursor.after, cursor.pending, cursor.time = chunk.id, pending, chunk.created_at
            if data:
                events.append((chunk.id, _message(data, chunk.created_at)))
        more = len(chunks) == TAIL_BATCH
        if more:
            return TailPoll(events, None, more)
        if state is None:  # the task is gone (its project was deleted): nothing more will come
            return TailPoll(events, {"status": "not_run", "exit_code": None}, False)
        step_ended = state.step_status not in (None, states.RUNNING)
        if not step_ended and state.task_status in TASK_ACTIVE:
            return TailPoll(events, None, False)
        if cursor.pending:  # the output ended in a broken character: send it as it is
            events.append((cursor.after, _message(cursor.pending, cursor.time)))
            cursor.pending = b""
        if step_ended:
            status = STEP_STATUS.get(state.step_status or "", state.step_status)
        else:  # the task ended under the step (a lost lease) or before it began
            status = state.task_status if state.step_status == states.RUNNING else "not_run"
        return TailPoll(events, {"status": status, "exit_code": state.exit_code}, False)


def _message(data: bytes, when: datetime | None) -> dict[str, Any]:
    return {"message": data.decode("utf-8", "replace"), "type": "out", "time": _time(when)}
