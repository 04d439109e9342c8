"""API v1.1 reads of a job, in CircleCI's v1.1 build shape, over the Job tag's lookups: the same
authorisation (404 for a project the caller may not see) and the same job-by-number rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Job, StepRun
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.http.auth import Principal
from circlet.http.errors import NotFound
from circlet.http.responses import timestamp
from circlet.jobs.service import JobService
from circlet.pipelines.service import slug_of

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
        base = f"{self.base_url}/api/v1.1/project/{'/'.join(slug)}/{number}/output"
        names = [step.get("name") or step.get("type", "") for step in ran.spec.get("steps", [])]
        by_step: dict[int, list[StepRun]] = {}
        for run in runs:
            by_step.setdefault(run.step_index, []).append(run)
        steps = []
        for step_index in sorted(by_step):
            actions = [
                self._action(run, index_of[run.task_id], (run.task_id, step_index) in with_output, base)
                for run in sorted(by_step[step_index], key=lambda run: index_of[run.task_id])
            ]
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
    def _action(run: StepRun, index: int, has_output: bool, base: str) -> dict[str, Any]:
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
            "has_output": has_output,
            "output_url": f"{base}/{run.step_index}/{index}" if has_output else None,
            "failed": True if status == "failed" else None,
            "timedout": True if status == "timedout" else None,
            "canceled": True if status == "canceled" else None,
        }

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
        _, ran, _ = await self._ran(session, principal, slug, number)
        task = next((task for task in await engine.tasks_of(session, [ran.id]) if task.parallel_index == index), None)
        run = await self._step_run(session, task.id, step) if task is not None else None
        if task is None or run is None:
            raise NotFound(MISSING_OUTPUT)
        data = await engine.output_of(session, task.id, step)
        if not data:
            return []
        when = run.ended_at or run.started_at
        return [{"message": data.decode("utf-8", "replace"), "type": "out", "time": _time(when)}]

    @staticmethod
    async def _step_run(session: AsyncSession, task_id: uuid.UUID, step: int) -> StepRun | None:
        return next((run for run in await engine.steps_of(session, [task_id]) if run.step_index == step), None)
