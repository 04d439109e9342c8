"""DAG progression: compiled workflows become jobs and tasks; finished tasks move the DAG on.

Every function here works inside the caller's unit of work and leaves committing to it; wake-ups
for runners are announced on the session (``TaskSignal.announce``) so they fire after the commit.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.config import CompiledConfig, ConfigError, ConfigInvalid, JobNode, WorkflowGraph
from circlet.config.loader import loc_of
from circlet.contexts import repository as contexts
from circlet.contexts.expressions import restriction_allows
from circlet.db.models import Job, Pipeline, Task, Workflow
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import serial, states
from circlet.engine.wakeups import TaskSignal
from circlet.groups import repository as groups
from circlet.orgs import repository as orgs
from circlet.runners import repository as runner_classes

LOCAL_RESOURCE_CLASS = "local"
RUNNERLESS = ("no-op", "lock", "unlock")
"""Job types that complete in the engine: a job group's boundary jobs (no runner, no number)."""
WAITING_FOR_GROUP = "waiting for serial group "
EXECUTOR_TYPES = ("docker", "machine", "macos", "windows")
ENGINE_ACTOR = "circlet"


def continuation_key(secret: bytes, pipeline_id: uuid.UUID) -> str:
    """The setup job's continuation key: derived, never stored (only its hash is)."""
    return "circlet_ck_" + hmac.new(secret, str(pipeline_id).encode(), hashlib.sha256).hexdigest()


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def resource_class_of(spec: dict[str, Any]) -> str:
    """``namespace/name`` classes belong to self-hosted runners; any other class (none, or a
    CircleCI size such as ``medium``) runs on the server's own runner, class ``local``."""
    value = spec.get("resource_class")
    if isinstance(value, str) and "/" in value:
        return value
    return LOCAL_RESOURCE_CLASS


def normalize_step(step: Any) -> dict[str, Any]:
    """``- checkout`` → ``{"type": "checkout"}``; ``- run: make`` → ``{"type": "run", "command": "make"}``."""
    if isinstance(step, str):
        name, args = step, None
    elif isinstance(step, dict) and len(step) == 1:
        name, args = next(iter(step.items()))
    else:
        return {"type": "unknown", "value": step}
    if name == "run":
        body: dict[str, Any] = {"command": args} if isinstance(args, str) else dict(args or {})
        command = str(body.get("command", ""))
        first_line = command.strip().splitlines()[0] if command.strip() else "run"
        return {
            "type": "run",
            "name": str(body.get("name") or first_line),
            "command": command,
            "shell": body.get("shell"),
            "working_directory": body.get("working_directory"),
            "environment": {k: str(v) for k, v in (body.get("environment") or {}).items()},
            "background": bool(body.get("background", False)),
            "no_output_timeout": str(body.get("no_output_timeout", "10m")),
            "when": body.get("when", "on_success"),
        }
    if name == "checkout":
        body = dict(args) if isinstance(args, dict) else {}
        return {"type": "checkout", "name": body.get("name", "Checkout code"), "path": body.get("path")}
    if isinstance(args, dict):
        return {"type": name, **args}
    return {"type": name} if args is None else {"type": name, "value": args}


def job_spec(node: JobNode, processed: dict[str, Any]) -> dict[str, Any]:
    """What a runner needs of a compiled job (secrets are added at claim time, never stored)."""
    body = processed.get("jobs", {}).get(node.job or "", {}) if node.job else {}
    executor_type = next((t for t in EXECUTOR_TYPES if t in node.executor), "docker")
    image = None
    if executor_type == "docker" and isinstance(node.executor.get("docker"), list) and node.executor["docker"]:
        image = node.executor["docker"][0].get("image")
    elif isinstance(node.executor.get(executor_type), dict):
        image = node.executor[executor_type].get("image")
    environment = body.get("environment") or {}
    return {
        "executor": {
            "type": executor_type,
            "image": image,
            "working_directory": body.get("working_directory") or "~/project",
            "resource_class": resource_class_of(node.executor),
            "raw": node.executor,
        },
        "environment": {str(k): str(v) for k, v in environment.items()},
        "steps": [normalize_step(step) for step in node.steps],
        "parallelism": max(1, int(node.executor.get("parallelism") or body.get("parallelism") or 1)),
    }


def checked_job_spec(node: JobNode, processed: dict[str, Any]) -> dict[str, Any]:
    """``job_spec``, where a compiled job of a shape it cannot read is the config's error, with
    the job's line, rather than the pipeline's generic failure."""
    try:
        return job_spec(node, processed)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        body = processed.get("jobs", {}).get(node.job or "")
        problem = f"job '{node.name}' cannot be run as compiled: {type(exc).__name__}: {exc}"
        raise ConfigInvalid([ConfigError(problem, f"jobs.{node.job}", loc_of(body))]) from exc


@dataclass
class Orchestrator:
    signal: TaskSignal
    continuation_secret: bytes
    shared_resource_classes: frozenset[str] = frozenset({LOCAL_RESOURCE_CLASS})
    """Classes every organization's jobs may use (``CIRCLET_SHARED_RESOURCE_CLASSES``)."""

    # -- creating workflows -----------------------------------------------------------------------

    async def create_workflows(
        self,
        session: AsyncSession,
        pipeline: Pipeline,
        compiled: CompiledConfig,
        org_id: uuid.UUID,
        *,
        setup: bool = False,
    ) -> list[Workflow]:
        graphs = compiled.graph_for(pipeline.branch, pipeline.tag)
        build_jobs = sum(1 for graph in graphs for node in graph.jobs if node.type == "build")
        first_number = (await engine.next_numbers(session, pipeline.project_id, jobs=build_jobs))[1]
        numbers = iter(range(first_number, first_number + build_jobs))
        created = []
        for graph in graphs:
            created.append(
                await self._create_workflow(session, pipeline, graph, compiled.processed, numbers, org_id, setup)
            )
        return created

    async def _create_workflow(
        self,
        session: AsyncSession,
        pipeline: Pipeline,
        graph: WorkflowGraph,
        processed: dict[str, Any],
        numbers: Any,
        org_id: uuid.UUID,
        setup: bool,
    ) -> Workflow:
        now = utcnow()
        workflow = Workflow(
            id=uuid.uuid4(),
            pipeline_id=pipeline.id,
            project_id=pipeline.project_id,
            name=graph.name,
            status=states.WF_RUNNING,
            tag="setup" if setup else None,
            started_by=pipeline.actor_id,
            max_auto_reruns=graph.max_auto_reruns,
            auto_rerun_number=0,
            created_at=now,
        )
        jobs = []
        for node in graph.jobs:
            approval = node.type != "build"
            spec = {} if approval else checked_job_spec(node, processed)
            if node.serial_group is not None and node.type in ("build", "lock", "unlock"):
                spec["serial_group"] = node.serial_group
            jobs.append(
                Job(
                    id=uuid.uuid4(),
                    workflow_id=workflow.id,
                    pipeline_id=pipeline.id,
                    project_id=pipeline.project_id,
                    name=node.name,
                    type=node.type if node.type in ("approval", *RUNNERLESS) else "build",
                    number=None if approval else next(numbers),
                    status=states.BLOCKED,
                    requires={name: list(accepted) for name, accepted in node.requires.items()},
                    contexts=list(node.context),
                    spec=spec,
                    parallelism=spec.get("parallelism", 1),
                    resource_class=spec["executor"]["resource_class"] if not approval else LOCAL_RESOURCE_CLASS,
                    executor_type=spec["executor"]["type"] if not approval else "none",
                    created_at=now,
                )
            )
        await engine.add(session, workflow)
        await engine.add(session, *jobs)
        await self.advance(session, workflow, pipeline, org_id, jobs)
        return workflow

    # -- moving the DAG on ------------------------------------------------------------------------

    async def advance(
        self,
        session: AsyncSession,
        workflow: Workflow,
        pipeline: Pipeline,
        org_id: uuid.UUID,
        jobs: Sequence[Job] | None = None,
    ) -> None:
        """Start every blocked job whose requirements are met, mark `not_run` those whose
        requirements can no longer be met, then derive the workflow's status."""
        jobs = list(jobs) if jobs is not None else await engine.jobs_of(session, workflow.id)
        by_name = {job.name: job for job in jobs}
        canceled = workflow.status == states.WF_CANCELED
        changed = True
        while changed:
            changed = False
            for job in jobs:
                if job.status != states.BLOCKED or waiting_for_group(job):
                    continue
                verdict = requirements_verdict(job.requires, {n: j.status for n, j in by_name.items()})
                if verdict is None:
                    continue
                changed = True
                if canceled:
                    set_job_status(job, states.CANCELED)
                elif verdict:
                    await self._start(session, job, pipeline, org_id)
                else:
                    set_job_status(job, states.NOT_RUN)
                    job.message = "A job it requires did not end with a status it accepts."
        ended = await self.update_workflow_status(session, workflow, jobs)
        if any(job.spec.get("serial_group") for job in jobs):
            await self.release_holds(session, workflow, jobs, org_id)
        if (
            ended
            and workflow.status == states.WF_FAILED
            and workflow.auto_rerun_number < (workflow.max_auto_reruns or 0)
        ):
            # `max_auto_reruns`: a failed workflow reruns from failed on its own, that many times.
            await self.rerun(
                session,
                workflow,
                pipeline,
                org_id,
                workflow.started_by,
                None,
                True,
                auto_rerun_number=workflow.auto_rerun_number + 1,
            )

    async def update_workflow_status(self, session: AsyncSession, workflow: Workflow, jobs: Sequence[Job]) -> bool:
        """Derive the workflow's status from its jobs'; True when it has just ended."""
        if workflow.status in states.WORKFLOW_FINAL:
            return False
        status = states.workflow_status(job.status for job in jobs)
        if status == workflow.status:
            return False
        states.check(states.WORKFLOW_TRANSITIONS, workflow.status, status)
        workflow.status = status
        if status in states.WORKFLOW_FINAL:
            workflow.stopped_at = utcnow()
        await session.flush()
        return status in states.WORKFLOW_FINAL

    async def _start(self, session: AsyncSession, job: Job, pipeline: Pipeline, org_id: uuid.UUID) -> None:
        if job.type == "approval":
            set_job_status(job, states.ON_HOLD)
            job.approval_request_id = job.id
            return
        key = job.spec.get("serial_group")
        if job.type == "no-op" or (job.type == "lock" and not key):
            complete_runnerless(job)
            return
        if job.type == "unlock":
            complete_runnerless(job)
            if key:
                for hold in await serial.holds_of_workflow(session, job.workflow_id):
                    if hold.key == key:
                        await self.promote(session, await serial.release(session, hold), org_id)
            return
        if job.type == "build":
            refused = await self.resource_class_refusal(session, org_id, job.resource_class)
            if refused is not None:
                set_job_status(job, states.FAILED)
                job.message = refused
                job.stopped_at = utcnow()
                await record_refusal(session, job, org_id, refused)
                return
            denied = await authorize_contexts(session, org_id, pipeline, job.contexts)
            if denied is not None:
                set_job_status(job, states.UNAUTHORIZED)
                job.message = denied
                return
        if key and not await serial.acquire(session, org_id, key, job.id, job.workflow_id):
            # Stays blocked; started by whichever transaction frees the group (`promote`).
            job.message = WAITING_FOR_GROUP + key
            await session.flush()
            return
        if job.type == "lock":
            complete_runnerless(job)
            return
        await self.enqueue(session, job)

    async def release_holds(
        self, session: AsyncSession, workflow: Workflow, jobs: Sequence[Job], org_id: uuid.UUID
    ) -> None:
        """Free the serial groups held by the workflow's ended build jobs, and every group it still
        holds once it has ended (a lock whose unlock never ran); each goes to its oldest waiter."""
        holds = await serial.holds_of_workflow(session, workflow.id)
        if not holds:
            return
        by_id = {job.id: job for job in jobs}
        ended = workflow.status in states.WORKFLOW_FINAL
        for hold in holds:
            holder = by_id.get(hold.job_id)
            if ended or holder is None or (holder.type != "lock" and holder.status in states.JOB_FINAL):
                await self.promote(session, await serial.release(session, hold), org_id)

    async def promote(self, session: AsyncSession, job_id: uuid.UUID | None, org_id: uuid.UUID) -> None:
        """Start a waiting job that has just been handed its serial group, and move its DAG on."""
        if job_id is None:
            return
        job = await engine.lock_job(session, job_id)
        workflow = await engine.get_workflow(session, job.workflow_id, lock=True) if job else None
        pipeline = await engine.get_pipeline(session, job.pipeline_id) if job else None
        assert job is not None and workflow is not None and pipeline is not None
        if job.status != states.BLOCKED or workflow.status in states.WORKFLOW_FINAL:
            # Ended meanwhile: pass the group on.
            hold = serial.Hold(org_id, str(job.spec.get("serial_group")), job.id)
            await self.promote(session, await serial.release(session, hold), org_id)
            return
        job.message = None
        if job.type == "lock":
            complete_runnerless(job)
        else:
            await self.enqueue(session, job)
        await self.advance(session, workflow, pipeline, org_id)

    async def enqueue(self, session: AsyncSession, job: Job) -> None:
        set_job_status(job, states.QUEUED)
        job.queued_at = utcnow()
        tasks = [
            Task(
                id=uuid.uuid4(),
                job_id=job.id,
                parallel_index=index,
                resource_class=job.resource_class,
                status=states.QUEUED,
                created_at=job.queued_at,
            )
            for index in range(job.parallelism)
        ]
        await engine.add(session, *tasks)
        await self.signal.announce(session, [job.resource_class])

    async def resource_class_refusal(self, session: AsyncSession, org_id: uuid.UUID, resource_class: str) -> str | None:
        """None when the organization's jobs may run on the class (a class it owns, or one the
        operator shares); otherwise why not, naming the class but not whether another owns it."""
        if resource_class in self.shared_resource_classes:
            return None
        owned = await runner_classes.class_by_name(session, resource_class)
        if owned is not None and owned.org_id == org_id:
            return None
        org = await orgs.get_org(session, org_id)
        name = org.name if org is not None else str(org_id)
        return (
            f"Resource class {resource_class} is not a resource class of organization {name}, nor one this "
            f"server shares with every organization: the job was not run. An organization admin creates the "
            f"organization's classes as {name.lower()}/NAME (circleci runner resource-class create)."
        )

    async def refuse_job(
        self, session: AsyncSession, job: Job, org_id: uuid.UUID, message: str, claimed: Task | None = None
    ) -> None:
        """Fail a job's waiting tasks (and ``claimed``, a task just taken by a runner that may not
        run it) before any runner works on them; the job fails once all its tasks have ended."""
        now = utcnow()
        for task in await engine.tasks_of(session, [job.id]):
            if task.status == states.QUEUED or (claimed is not None and task.id == claimed.id):
                states.check(states.TASK_TRANSITIONS, task.status, states.FAILED)
                task.status = states.FAILED
                task.message = message
                task.ended_at = now
        await session.flush()
        await record_refusal(session, job, org_id, message)
        await self.settle_job(session, job, org_id)

    # -- task outcomes ----------------------------------------------------------------------------

    async def settle_job(self, session: AsyncSession, job: Job, org_id: uuid.UUID) -> None:
        """Once every task of a job has ended, the job takes their worst outcome and the DAG moves."""
        locked = await engine.lock_job(session, job.id)
        assert locked is not None
        job = locked
        tasks = await engine.tasks_of(session, [job.id])
        outcome = states.job_outcome(task.status for task in tasks)
        if outcome is None or job.status in states.JOB_FINAL:
            return
        if outcome in (states.CANCELED, states.FAILED) and job.status == states.QUEUED:
            # Canceled, or refused (`refuse_job`), before any runner took it.
            set_job_status(job, outcome)
        else:
            if job.status == states.QUEUED:
                set_job_status(job, states.RUNNING)
            set_job_status(job, outcome)
        job.stopped_at = utcnow()
        messages = [task.message for task in tasks if task.message]
        if messages:
            job.message = messages[0]
        workflow = await engine.get_workflow(session, job.workflow_id, lock=True)
        pipeline = await engine.get_pipeline(session, job.pipeline_id)
        assert workflow is not None and pipeline is not None
        await self.advance(session, workflow, pipeline, org_id)

    # -- people's actions -------------------------------------------------------------------------

    async def cancel_job(self, session: AsyncSession, job: Job, by: uuid.UUID | None) -> None:
        """Queued or waiting: canceled now. Running: its runners are told at their next heartbeat."""
        if job.status in states.JOB_FINAL:
            return
        tasks = await engine.tasks_of(session, [job.id])
        for task in tasks:
            if task.status == states.QUEUED:
                task.status = states.CANCELED
                task.ended_at = utcnow()
            elif task.status == states.RUNNING:
                task.cancel_requested = True
        # Tasks first: a claim holds its task's row and then wants the job's.
        await session.flush()
        if waiting_for_group(job):
            await serial.forget_waiter(session, job.id)
        job.canceled_by = by
        if job.status != states.RUNNING:
            set_job_status(job, states.CANCELED)
            job.stopped_at = utcnow()
        await session.flush()

    async def cancel_workflow(self, session: AsyncSession, workflow: Workflow, by: uuid.UUID | None) -> None:
        if workflow.status in states.WORKFLOW_FINAL:
            return
        for job in await engine.jobs_of(session, workflow.id):
            await self.cancel_job(session, job, by)
        workflow.status = states.WF_CANCELED
        workflow.canceled_by = by
        workflow.stopped_at = utcnow()
        await session.flush()
        for hold in await serial.holds_of_workflow(session, workflow.id):
            await self.promote(session, await serial.release(session, hold), hold.org_id)

    async def approve(
        self,
        session: AsyncSession,
        workflow: Workflow,
        job: Job,
        pipeline: Pipeline,
        org_id: uuid.UUID,
        by: uuid.UUID,
    ) -> None:
        set_job_status(job, states.SUCCESS)
        job.approved_by = by
        job.started_at = job.stopped_at = utcnow()
        await self.advance(session, workflow, pipeline, org_id)

    async def rerun(
        self,
        session: AsyncSession,
        workflow: Workflow,
        pipeline: Pipeline,
        org_id: uuid.UUID,
        by: uuid.UUID | None,
        selected: set[str] | None,
        from_failed: bool,
        *,
        auto_rerun_number: int = 0,
    ) -> Workflow:
        """A new workflow in the same pipeline: the chosen jobs and everything downstream of them
        run again; every other job is carried over with its status (and number)."""
        old_jobs = await engine.jobs_of(session, workflow.id)
        if from_failed:
            roots = {job.name for job in old_jobs if job.status != states.SUCCESS}
        elif selected is not None:
            roots = selected
        else:
            roots = {job.name for job in old_jobs}
        needs = {job.name: set(job.requires) for job in old_jobs}
        again = downstream(roots, needs)
        # A serialised job group running again takes its lock again.
        types = {job.name: job.type for job in old_jobs}
        locks = {name for job in again if types[job] == "unlock" for name in needs[job] if types[name] == "lock"}
        if locks - again:
            again = downstream(roots | locks, needs)
        fresh = [job for job in old_jobs if job.name in again and job.type == "build"]
        first = (await engine.next_numbers(session, pipeline.project_id, jobs=len(fresh)))[1]
        numbers = iter(range(first, first + len(fresh)))
        now = utcnow()
        new = Workflow(
            id=uuid.uuid4(),
            pipeline_id=pipeline.id,
            project_id=pipeline.project_id,
            name=workflow.name,
            status=states.WF_RUNNING,
            tag=workflow.tag,
            started_by=by,
            rerun_of=workflow.id,
            max_auto_reruns=workflow.max_auto_reruns,
            auto_rerun_number=auto_rerun_number,
            created_at=now,
        )
        jobs = []
        for old in old_jobs:
            rerun = old.name in again
            jobs.append(
                Job(
                    id=uuid.uuid4(),
                    workflow_id=new.id,
                    pipeline_id=pipeline.id,
                    project_id=pipeline.project_id,
                    name=old.name,
                    type=old.type,
                    number=(next(numbers) if old.type == "build" else None) if rerun else old.number,
                    status=states.BLOCKED if rerun else old.status,
                    requires=old.requires,
                    contexts=old.contexts,
                    spec=old.spec,
                    parallelism=old.parallelism,
                    resource_class=old.resource_class,
                    executor_type=old.executor_type,
                    approval_request_id=None if rerun else old.approval_request_id,
                    approved_by=None if rerun else old.approved_by,
                    reused_from=None if rerun else old.id,
                    created_at=now,
                    queued_at=None if rerun else old.queued_at,
                    started_at=None if rerun else old.started_at,
                    stopped_at=None if rerun else old.stopped_at,
                )
            )
        await engine.add(session, new)
        await engine.add(session, *jobs)
        await self.advance(session, new, pipeline, org_id, jobs)
        return new


async def record_refusal(session: AsyncSession, job: Job, org_id: uuid.UUID, message: str) -> None:
    await audit.record(
        session,
        actor_id=None,
        actor=ENGINE_ACTOR,
        action="job.refused",
        target_type="job",
        target_id=job.id,
        org_id=org_id,
        details={"resource_class": job.resource_class, "project_id": str(job.project_id), "message": message},
    )


def set_job_status(job: Job, status: str) -> None:
    states.check(states.JOB_TRANSITIONS, job.status, status)
    job.status = status


def complete_runnerless(job: Job) -> None:
    """A no-op, lock or unlock job: succeeds where it stands, without a runner."""
    set_job_status(job, states.SUCCESS)
    job.started_at = job.stopped_at = utcnow()


def waiting_for_group(job: Job) -> bool:
    """A ready job queued up behind its serial group's holder (its message says so)."""
    return job.status == states.BLOCKED and (job.message or "").startswith(WAITING_FOR_GROUP)


def requirements_verdict(requires: dict[str, list[str]], statuses: dict[str, str]) -> bool | None:
    """True when every requirement is met, False when one can no longer be, else None."""
    met = True
    for name, accepted in requires.items():
        current = statuses.get(name)
        if current is None:
            return False
        verdict = states.requirement_state(current, accepted)
        if verdict is False:
            return False
        if verdict is None:
            met = False
    return True if met else None


def downstream(roots: set[str], requires: dict[str, set[str]]) -> set[str]:
    """``roots`` and every job that requires one of them, directly or not."""
    result = set(roots) & set(requires)
    changed = True
    while changed:
        changed = False
        for name, needs in requires.items():
            if name not in result and needs & result:
                result.add(name)
                changed = True
    return result


def restriction_values(pipeline: Pipeline) -> dict[str, Any]:
    return {f"pipeline.{name}": value for name, value in pipeline.values.items()}


async def authorize_contexts(
    session: AsyncSession, org_id: uuid.UUID, pipeline: Pipeline, names: Sequence[str]
) -> str | None:
    """None when the job may have every context it names; otherwise why not. Each restriction
    type must hold: the project is one of the project restrictions, every expression restriction
    is true for the pipeline's values, the triggering user is in one of the groups."""
    values = restriction_values(pipeline)
    for name in names:
        context = await contexts.find_context_by_name(session, org_id, name)
        if context is None:
            return f"Context '{name}' does not exist in this organization."
        restrictions = await contexts.list_restrictions(session, context.id, None, 10_000)
        by_type: dict[str, list[str]] = {}
        for restriction in restrictions:
            by_type.setdefault(restriction.restriction_type, []).append(restriction.restriction_value)
        if "project" in by_type and str(pipeline.project_id) not in by_type["project"]:
            return f"Context '{name}' is restricted to other projects."
        for expression in by_type.get("expression", []):
            if not restriction_allows(expression, values):
                return f"Context '{name}' is restricted by an expression this pipeline does not satisfy."
        if "group" in by_type:
            member_of = await groups.groups_of_user(session, org_id, pipeline.actor_id) if pipeline.actor_id else set()
            if not member_of & {uuid.UUID(value) for value in by_type["group"]}:
                return f"Context '{name}' is restricted to groups the triggering user is not in."
    return None
