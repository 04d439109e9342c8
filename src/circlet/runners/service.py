"""Runner tokens, claims, heartbeats, step events, output and completion (docs/runner-protocol.md).

A claimed task's payload is built at claim time: project and context variables are opened then,
go into that one response, and are stored nowhere in plaintext.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.contexts import repository as contexts
from circlet.contexts.service import ContextService
from circlet.db.models import Job, RunnerToken, Task
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.orchestrator import LOCAL_RESOURCE_CLASS, Orchestrator, continuation_key
from circlet.engine.processor import LEASE_LOST
from circlet.engine.queue import HEARTBEAT_SECONDS
from circlet.http.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from circlet.orgs import repository as orgs
from circlet.pipelines.service import slug_of
from circlet.projects import repository as projects
from circlet.projects.service import ProjectService
from circlet.projects.ssh_keys import ssh_keys_for_task
from circlet.storage import repository as storage
from circlet.users import repository as users
from circlet.users.tokens import token_hash

RUNNER_TOKEN_PREFIX = "circlet_rt_"
TASK_TOKEN_PREFIX = "circlet_tt_"
RESOURCE_CLASS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}/[a-z0-9][a-z0-9_.-]{0,99}$")
SEEN_EVERY_SECONDS = 10.0
MIN_SECRET_LENGTH = 4
TIMINGS_ROWS = 5000
OUTPUT_FULL = "\n[circlet: this job's output passed {limit} bytes (step_output_bytes_per_task); the rest is not kept]\n"


def check_resource_class(value: str) -> str:
    if value != LOCAL_RESOURCE_CLASS and not RESOURCE_CLASS.match(value):
        raise BadRequest(
            f"resource class {value!r}: expected namespace/name (lower-case letters, digits, '-', '_', '.') or local."
        )
    return value


def bearer(authorization: str | None) -> str:
    if not authorization or authorization[:7].lower() != "bearer ":
        raise Unauthorized("A runner or task token is required (Authorization: Bearer ...).")
    return authorization[7:].strip()


async def mint_runner_token(session: AsyncSession, resource_class: str, label: str = "") -> tuple[RunnerToken, str]:
    token = RUNNER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = RunnerToken(
        id=uuid.uuid4(),
        resource_class=check_resource_class(resource_class),
        token_hash=token_hash(token),
        label=label,
        created_at=utcnow(),
    )
    await engine.add(session, row)
    return row, token


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"not an RFC 3339 time: {value!r}") from None


async def test_timings(session: AsyncSession, project_id: uuid.UUID) -> dict[str, dict[str, float]] | None:
    """Seconds per file, class and test of the project's newest stored test results (at most
    ``TIMINGS_ROWS`` rows), for ``circleci tests split --split-by=timings``; ``None`` without any.

    A test's time is its most recent result's; a file's or class's is the sum of its tests in the
    most recent job that ran it (the parallel indexes of one job together)."""
    rows = await storage.recent_test_results(session, project_id, TIMINGS_ROWS)
    if not rows:
        return None
    timings: dict[str, dict[str, float]] = {"filename": {}, "classname": {}, "testname": {}}
    newest_job: dict[tuple[str, str], uuid.UUID] = {}
    for job_id, file, classname, name, run_time in rows:  # newest first
        seconds = float(run_time or 0.0)
        timings["testname"].setdefault(name, seconds)
        for kind, key in (("filename", file), ("classname", classname)):
            if not key or newest_job.setdefault((kind, key), job_id) != job_id:
                continue
            timings[kind][key] = timings[kind].get(key, 0.0) + seconds
    return {kind: {key: round(value, 3) for key, value in table.items()} for kind, table in timings.items()}


@dataclass
class RunnerService:
    orchestrator: Orchestrator
    project_service: ProjectService
    context_service: ContextService
    base_url: str
    lease: timedelta
    step_output_bytes: int = 256 * 1024 * 1024
    _seen: dict[uuid.UUID, float] = field(default_factory=dict)

    async def runner(self, session: AsyncSession, authorization: str | None, resource_class: str) -> RunnerToken:
        row = await engine.runner_token(session, token_hash(bearer(authorization)))
        if row is None:
            raise Unauthorized("Invalid runner token.")
        if row.resource_class != resource_class:
            raise Forbidden(f"This token is for resource class {row.resource_class}, not {resource_class}.")
        return row

    async def claim(self, session: AsyncSession, runner: RunnerToken, runner_name: str) -> dict[str, Any] | None:
        """One claim attempt, in the caller's unit of work."""
        now = time.monotonic()
        if now - self._seen.get(runner.id, 0.0) > SEEN_EVERY_SECONDS:
            self._seen[runner.id] = now
            await engine.mark_runner_seen(session, runner.id)
        task_token = TASK_TOKEN_PREFIX + secrets.token_urlsafe(32)
        task = await engine.claim_task(session, runner.resource_class, runner_name, self.lease, token_hash(task_token))
        if task is None:
            return None
        job = await engine.get_job(session, task.job_id)
        assert job is not None
        if job.status == states.QUEUED:
            states.check(states.JOB_TRANSITIONS, job.status, states.RUNNING)
            job.status = states.RUNNING
            job.started_at = utcnow()
        return await self._payload(session, task, job, task_token)

    async def _payload(self, session: AsyncSession, task: Task, job: Job, task_token: str) -> dict[str, Any]:
        workflow = await engine.get_workflow(session, job.workflow_id)
        pipeline = await engine.get_pipeline(session, job.pipeline_id)
        project = await projects.get_project(session, job.project_id)
        org = await orgs.get_org(session, project.org_id) if project else None
        assert workflow is not None and pipeline is not None and project is not None and org is not None
        actor = await users.get_user(session, pipeline.actor_id) if pipeline.actor_id else None
        slug = slug_of(project, org)
        build_url = f"{self.base_url}/pipelines/{slug}/{pipeline.number}/workflows/{workflow.id}/jobs/{job.number}"
        spec = job.spec
        builtins = {
            "CI": "true",
            "CIRCLECI": "true",
            "CIRCLE_BUILD_NUM": str(job.number),
            "CIRCLE_BUILD_URL": build_url,
            "CIRCLE_JOB": job.name,
            "CIRCLE_NODE_INDEX": str(task.parallel_index),
            "CIRCLE_NODE_TOTAL": str(job.parallelism),
            "CIRCLE_PIPELINE_ID": str(pipeline.id),
            "CIRCLE_PIPELINE_NUMBER": str(pipeline.number),
            "CIRCLE_WORKFLOW_ID": str(workflow.id),
            "CIRCLE_WORKFLOW_JOB_ID": str(job.id),
            "CIRCLE_WORKFLOW_WORKSPACE_ID": str(workflow.rerun_of or workflow.id),
            "CIRCLE_PROJECT_USERNAME": org.name,
            "CIRCLE_PROJECT_REPONAME": project.name,
            "CIRCLE_PROJECT_ID": str(project.id),
            "CIRCLE_ORGANIZATION_ID": str(org.id),
            "CIRCLE_REPOSITORY_URL": pipeline.vcs_url,
            "CIRCLE_SHA1": pipeline.revision or "",
            "CIRCLE_USERNAME": actor.login if actor else "",
            "CIRCLE_WORKING_DIRECTORY": spec["executor"]["working_directory"],
        }
        if pipeline.branch is not None:
            builtins["CIRCLE_BRANCH"] = pipeline.branch
        if pipeline.tag is not None:
            builtins["CIRCLE_TAG"] = pipeline.tag
        if workflow.tag == "setup":
            builtins["CIRCLE_CONTINUATION_KEY"] = continuation_key(self.orchestrator.continuation_secret, pipeline.id)
        project_vars = await self.project_service.env_var_values(session, project.id)
        context_vars: dict[str, str] = {}
        for name in job.contexts:
            context = await contexts.find_context_by_name(session, org.id, name)
            if context is not None:
                context_vars.update(await self.context_service.env_var_values(session, context.id))
        # CircleCI's precedence, lowest first (docs/compatibility.md).
        environment = {**builtins, **project_vars, **context_vars, **spec["environment"]}
        masked = sorted({v for v in (*project_vars.values(), *context_vars.values()) if len(v) >= MIN_SECRET_LENGTH})
        if "CIRCLE_CONTINUATION_KEY" in builtins:
            masked.append(builtins["CIRCLE_CONTINUATION_KEY"])
        return {
            "task_id": task.id,
            "task_token": task_token,
            "lease_seconds": int(self.lease.total_seconds()),
            "heartbeat_seconds": min(HEARTBEAT_SECONDS, max(1, int(self.lease.total_seconds()) // 3)),
            "job": {
                "id": job.id,
                "number": job.number,
                "name": job.name,
                "parallel_index": task.parallel_index,
                "parallelism": job.parallelism,
                "workflow_id": workflow.id,
                "workflow_name": workflow.name,
                "pipeline_id": pipeline.id,
                "pipeline_number": pipeline.number,
                "project_slug": slug,
                "project_name": project.name,
                "organization": org.name,
                "build_url": build_url,
            },
            "checkout": {
                "url": pipeline.vcs_url,
                "revision": pipeline.revision,
                "branch": pipeline.branch,
                "tag": pipeline.tag,
                "ssh_private_key": await self.project_service.preferred_private_key(session, project.id),
            },
            "executor": spec["executor"],
            "environment": environment,
            "secrets": masked,
            "test_timings": await test_timings(session, project.id),
            "ssh_keys": await ssh_keys_for_task(session, self.project_service.keyring, project.id),
            "steps": spec["steps"],
        }

    # -- a claimed task ---------------------------------------------------------------------------

    async def task(self, session: AsyncSession, authorization: str | None, task_id: uuid.UUID) -> Task:
        task = await engine.task_by_token(session, token_hash(bearer(authorization)))
        if task is None:
            raise Unauthorized("Invalid task token.")
        if task.id != task_id:
            raise Forbidden("This task token is for another task.")
        return task

    @staticmethod
    def require_running(task: Task) -> None:
        if task.status == states.RUNNING:
            return
        if task.status == states.INFRASTRUCTURE_FAIL and task.message == LEASE_LOST:
            raise Conflict("task lease expired")
        raise Conflict(f"task has ended ({task.status})")

    async def heartbeat(self, session: AsyncSession, task: Task) -> dict[str, Any]:
        self.require_running(task)
        task.lease_expires_at = utcnow() + self.lease
        await session.flush()
        return {"lease_seconds": int(self.lease.total_seconds()), "cancel": task.cancel_requested}

    async def step_event(self, session: AsyncSession, task: Task, index: int, event: Any) -> None:
        self.require_running(task)
        job = await engine.get_job(session, task.job_id)
        assert job is not None
        if not 0 <= index < len(job.spec.get("steps", [])):
            raise NotFound("No step at this index.")
        await engine.save_step(
            session,
            task.id,
            index,
            {
                "name": event.name,
                "status": event.status,
                "exit_code": event.exit_code,
                "started_at": parse_time(event.started_at),
                "ended_at": parse_time(event.ended_at),
            },
        )

    async def output(self, session: AsyncSession, task: Task, index: int, data: bytes) -> None:
        self.require_running(task)
        if not data:
            return
        if await engine.charge_output(session, task.id, len(data), self.step_output_bytes):
            await engine.append_output(session, task.id, index, data)
        elif await engine.mark_output_full(session, task.id, self.step_output_bytes):
            # The job runs on; its log says why the rest of its output is missing.
            await engine.append_output(
                session, task.id, index, OUTPUT_FULL.format(limit=self.step_output_bytes).encode()
            )

    async def complete(self, session: AsyncSession, task: Task, status: str, message: str | None) -> None:
        if task.status == status:
            return
        self.require_running(task)
        job = await engine.get_job(session, task.job_id)
        project = await projects.get_project(session, job.project_id) if job else None
        assert job is not None and project is not None
        # Locks are taken workflow first, then job, then task, everywhere: no deadlocks.
        await engine.get_workflow(session, job.workflow_id, lock=True)
        await engine.lock_job(session, job.id)
        await engine.lock_task(session, task.id)
        self.require_running(task)
        states.check(states.TASK_TRANSITIONS, task.status, status)
        task.status = status
        task.message = message[:2000] if message else None
        task.ended_at = utcnow()
        await self.orchestrator.settle_job(session, job, project.org_id)

    async def depth(self, session: AsyncSession, resource_class: str, status: str) -> int:
        return await engine.count_tasks(session, resource_class, status)
