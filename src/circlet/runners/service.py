"""Runner tokens, claims, heartbeats, step events, output and completion (docs/runner-protocol.md).

A claimed task's payload is built at claim time: project and context variables are opened then,
go into that one response, and are stored nowhere in plaintext.

Resource classes belong to the organization their namespace names; organization admins (through
CircleCI's runner API) and the operator (``circlet admin runner``) create them and mint, list and
revoke their tokens (docs/compatibility.md, "Runners belong to organizations").
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

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, Principal, require_role
from circlet.auth.tokens import token_hash
from circlet.contexts import repository as contexts
from circlet.contexts.service import ContextService
from circlet.db.models import Job, Organization, RunnerInstance, RunnerResourceClass, RunnerToken, Task
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.loops import LEASE_LOST
from circlet.engine.orchestrator import LOCAL_RESOURCE_CLASS, Orchestrator, continuation_key
from circlet.engine.wakeups import HEARTBEAT_SECONDS
from circlet.http.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from circlet.http.responses import timestamp
from circlet.orgs import repository as orgs
from circlet.pipelines.service import slug_of
from circlet.projects import repository as projects
from circlet.projects.service import ProjectService
from circlet.projects.ssh_keys.service import ssh_keys_for_task
from circlet.runners import repository as runners
from circlet.storage import repository as storage
from circlet.users import repository as users
from circlet.users.service import OPERATOR

RUNNER_TOKEN_PREFIX = "circlet_rt_"
TASK_TOKEN_PREFIX = "circlet_tt_"
RESOURCE_CLASS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}/[a-z0-9][a-z0-9_.-]{0,99}$")
SEEN_EVERY_SECONDS = 10.0
MIN_SECRET_LENGTH = 4
TIMINGS_ROWS = 5000
OUTPUT_FULL = "\n[circlet: this job's output passed {limit} bytes (step_output_bytes_per_task); the rest is not kept]\n"


def bearer(authorization: str | None) -> str:
    if not authorization or authorization[:7].lower() != "bearer ":
        raise Unauthorized("A runner or task token is required (Authorization: Bearer ...).")
    return authorization[7:].strip()


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
    shared: frozenset[str] = frozenset({LOCAL_RESOURCE_CLASS})
    step_output_bytes: int = 256 * 1024 * 1024
    _seen: dict[tuple[uuid.UUID, str], float] = field(default_factory=dict)

    async def runner(self, session: AsyncSession, authorization: str | None, resource_class: str) -> RunnerToken:
        row = await engine.runner_token(session, token_hash(bearer(authorization)))
        if row is None:
            raise Unauthorized("Invalid runner token.")
        if row.resource_class != resource_class:
            raise Forbidden(f"This token is for resource class {row.resource_class}, not {resource_class}.")
        if row.org_id is None and not self.is_shared(row.resource_class):
            # Minted before classes had owners, for a namespace no organization could be found for.
            raise Unauthorized(
                f"This runner token's resource class {row.resource_class} belongs to no organization and is not "
                "shared: create the class (circlet admin runner resource-class create) and mint a new token."
            )
        return row

    def is_shared(self, resource_class: str) -> bool:
        return resource_class == LOCAL_RESOURCE_CLASS or resource_class in self.shared

    async def claim(
        self, session: AsyncSession, runner: RunnerToken, runner_name: str, version: str = "", ip: str = ""
    ) -> dict[str, Any] | None:
        """One claim attempt, in the caller's unit of work. The token is looked up again (a revoked
        token claims nothing more), and a task of a job whose organization may not use the token's
        class is failed, never handed out, whatever put it in the queue."""
        if await runners.get_token(session, runner.id) is None:
            raise Unauthorized("This runner token has been revoked.")
        now = time.monotonic()
        seen_key = (runner.id, runner_name)
        if now - self._seen.get(seen_key, 0.0) > SEEN_EVERY_SECONDS:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[seen_key] = now
            await engine.mark_runner_seen(session, runner.id)
            await runners.record_instance(session, runner, runner_name, version, ip, claimed=False)
        while True:
            task_token = TASK_TOKEN_PREFIX + secrets.token_urlsafe(32)
            task = await engine.claim_task(
                session, runner.resource_class, runner_name, self.lease, token_hash(task_token)
            )
            if task is None:
                return None
            job = await engine.get_job(session, task.job_id)
            project = await projects.get_project(session, job.project_id) if job else None
            assert job is not None and project is not None
            if self.is_shared(runner.resource_class) or project.org_id == runner.org_id:
                break
            refused = await self.orchestrator.resource_class_refusal(session, project.org_id, runner.resource_class)
            await self.orchestrator.refuse_job(session, job, project.org_id, refused or "refused", claimed=task)
        await runners.record_instance(session, runner, runner_name, version, ip, claimed=True)
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


# -- resource classes, tokens and instances: what organization admins and the operator manage -----


def optional_timestamp(value: datetime | None) -> str | None:
    return timestamp(value) if value is not None else None


def _class_body(row: RunnerResourceClass) -> dict[str, Any]:
    return {"id": row.id, "resource_class": row.name, "description": row.description}


def _token_body(row: RunnerToken) -> dict[str, Any]:
    """A token's metadata; the token itself is shown once, when minted, and never stored."""
    return {
        "id": row.id,
        "resource_class": row.resource_class,
        "nickname": row.label,
        "created_at": timestamp(row.created_at),
        "last_used_at": optional_timestamp(row.last_seen_at),
    }


def _instance_body(row: RunnerInstance) -> dict[str, Any]:
    return {
        "resource_class": row.resource_class,
        "hostname": row.name,
        "name": row.name,
        "version": row.version,
        "ip": row.ip,
        "first_connected": timestamp(row.first_seen_at),
        "last_connected": timestamp(row.last_seen_at),
        "last_used": optional_timestamp(row.last_used_at),
    }


def _uuid_or_none(value: str) -> uuid.UUID | None:
    """An id from a path: one that is not a UUID names nothing (404), as an unknown one."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def check_owned_class_name(value: str) -> str:
    if not RESOURCE_CLASS.match(value):
        raise BadRequest(
            f"resource class {value!r}: expected namespace/name (lower-case letters, digits, '-', '_', '.'), "
            "where the namespace is the organization's name."
        )
    return value


async def _audit(
    session: AsyncSession,
    actor: Principal | None,
    action: str,
    target_id: uuid.UUID,
    org_id: uuid.UUID | None,
    details: dict[str, Any],
) -> None:
    await audit.record(
        session,
        actor_id=actor.user_id if actor else None,
        actor=actor.login if actor else OPERATOR,
        action=action,
        target_type="runner",
        target_id=target_id,
        org_id=org_id,
        details=details,
    )


async def namespace_org(session: AsyncSession, principal: Principal | None, namespace: str) -> Organization:
    """The organization a namespace is: of those named so (case-insensitively) that the caller
    belongs to, the one that owns classes in it, or before any does, the oldest; 404 for none."""
    mine = [
        org
        for org in await runners.orgs_named(session, namespace)
        if principal is None or principal.role_in(org.id) is not None
    ]
    if not mine:
        raise NotFound(f"Namespace {namespace} not found.")
    owner = await runners.namespace_owner(session, namespace)
    for org in mine:
        if owner is None or org.id == owner:
            return org
    raise Conflict(f"The namespace {namespace} belongs to another organization of the same name.")


async def create_class(
    session: AsyncSession, principal: Principal | None, name: str, description: str, org: Organization | None = None
) -> dict[str, Any]:
    """A new class ``namespace/name`` of the namespace's organization; ``principal`` must be its admin
    (``None``: the operator, who names the organization, ``org``)."""
    namespace = check_owned_class_name(name).split("/", 1)[0]
    if org is None:
        org = await namespace_org(session, principal, namespace)
    elif org.name_key != namespace:
        raise BadRequest(
            f"The namespace of organization {org.name}'s resource classes is {org.name_key}, not {namespace}."
        )
    owner = await runners.namespace_owner(session, namespace)
    if owner is not None and owner != org.id:
        raise Conflict(f"The namespace {namespace} belongs to another organization of the same name.")
    if principal is not None:
        require_role(principal, org.id, ROLE_ADMIN, missing="Namespace not found.", action="create resource classes")
    if await runners.class_by_name(session, name) is not None:
        raise Conflict(f"Resource class {name} already exists.")
    row = await runners.add_class(session, org.id, name, description)
    await _audit(session, principal, "runner.resource_class.create", row.id, org.id, {"resource_class": name})
    return _class_body(row)


async def list_classes(
    session: AsyncSession, principal: Principal, namespace: str | None, org_id: uuid.UUID | None
) -> dict[str, Any]:
    if org_id is not None:
        org = await orgs.get_org(session, org_id)
        if org is None or principal.role_in(org.id) is None:
            raise NotFound("Organization not found.")
    elif namespace:
        org = await namespace_org(session, principal, namespace.lower())
    else:
        raise BadRequest("namespace or org-id is required.")
    return {"items": [_class_body(row) for row in await runners.classes_of(session, org.id)]}


def _managed_class(principal: Principal | None, row: RunnerResourceClass | None, action: str) -> RunnerResourceClass:
    """The class, if the caller may manage it (the operator may manage any); else 404, or 403."""
    if row is None or (principal is not None and principal.role_in(row.org_id) is None):
        raise NotFound("Resource class not found.")
    if principal is not None:
        require_role(principal, row.org_id, ROLE_ADMIN, missing="Resource class not found.", action=action)
    return row


async def delete_class(
    session: AsyncSession, orchestrator: Orchestrator, principal: Principal | None, class_id: str, *, force: bool
) -> str:
    """Delete a class (with ``force``, its tokens too; without, 409 while it has any). Jobs waiting
    for it fail, as a job naming a class that does not exist does; running ones finish."""
    parsed = _uuid_or_none(class_id)
    row = await runners.get_class(session, parsed) if parsed else None
    row = _managed_class(principal, row, "delete resource classes")
    tokens = await runners.tokens_of_class(session, row.name)
    if tokens and not force:
        raise Conflict(
            f"Resource class {row.name} still has {len(tokens)} runner token(s): delete them first, or force."
        )
    await runners.delete_class(session, row.id)
    await _audit(
        session,
        principal,
        "runner.resource_class.delete",
        row.id,
        row.org_id,
        {"resource_class": row.name, "tokens_deleted": len(tokens)},
    )
    message = f"Resource class {row.name} was deleted while the job waited for it: the job was not run."
    for job_id in await runners.queued_job_ids(session, row.name):
        job = await engine.get_job(session, job_id)
        workflow = await engine.get_workflow(session, job.workflow_id, lock=True) if job else None
        locked = await engine.lock_job(session, job_id) if workflow else None
        if locked is not None and locked.status in (states.QUEUED, states.RUNNING):
            await orchestrator.refuse_job(session, locked, row.org_id, message)
    return row.name


async def create_token(
    session: AsyncSession, principal: Principal | None, resource_class: str, nickname: str, shared: frozenset[str]
) -> dict[str, Any]:
    """A token for an existing class, bound to its organization; the operator may also mint one for
    a class it shares (bound to no organization)."""
    row = await runners.class_by_name(session, resource_class)
    if row is None and principal is None and (resource_class in shared or resource_class == LOCAL_RESOURCE_CLASS):
        org_id, class_id = None, None
    else:
        row = _managed_class(principal, row, "create runner tokens")
        org_id, class_id = row.org_id, row.id
    token = RUNNER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    minted = await runners.add_token(session, resource_class, token_hash(token), nickname, class_id, org_id)
    await _audit(
        session,
        principal,
        "runner.token.create",
        minted.id,
        org_id,
        {"resource_class": resource_class, "nickname": nickname},
    )
    return {**_token_body(minted), "token": token}


async def list_tokens(session: AsyncSession, principal: Principal, resource_class: str) -> dict[str, Any]:
    row = _managed_class(principal, await runners.class_by_name(session, resource_class), "list runner tokens")
    return {"items": [_token_body(token) for token in await runners.tokens_of_class(session, row.name)]}


async def operator_tokens(
    session: AsyncSession, org: Organization | None, resource_class: str | None
) -> list[dict[str, Any]]:
    rows = await runners.tokens_where(session, org.id if org else None, resource_class)
    return [_token_body(row) for row in rows]


async def revoke_token(session: AsyncSession, principal: Principal | None, token_id: str) -> str:
    """Delete a token: its runner's next claim or queue-depth call is a 401; a task it holds runs
    to its end (its task token stays valid until the task completes), as on CircleCI. Returns the
    token's class, whose waiting claims the caller wakes so they hear the 401 at once."""
    parsed = _uuid_or_none(token_id)
    row = await runners.get_token(session, parsed) if parsed else None
    if row is None or (principal is not None and (row.org_id is None or principal.role_in(row.org_id) is None)):
        raise NotFound("Runner token not found.")
    if principal is not None:
        assert row.org_id is not None
        require_role(
            principal, row.org_id, ROLE_ADMIN, missing="Runner token not found.", action="delete runner tokens"
        )
    await runners.delete_token(session, row.id)
    await _audit(
        session,
        principal,
        "runner.token.revoke",
        row.id,
        row.org_id,
        {"resource_class": row.resource_class, "nickname": row.label},
    )
    return row.resource_class


async def list_instances(
    session: AsyncSession,
    principal: Principal,
    resource_class: str | None,
    namespace: str | None,
    org_id: uuid.UUID | None,
) -> dict[str, Any]:
    """Runner instances of a class, or of an organization (``namespace`` or ``org-id``), to its members."""
    if resource_class:
        row = await runners.class_by_name(session, resource_class)
        if row is None or principal.role_in(row.org_id) is None:
            raise NotFound("Resource class not found.")
        rows = await runners.instances(session, resource_class=row.name)
    elif org_id is not None:
        org = await orgs.get_org(session, org_id)
        if org is None or principal.role_in(org.id) is None:
            raise NotFound("Organization not found.")
        rows = await runners.instances(session, org_id=org.id)
    elif namespace:
        rows = await runners.instances(session, org_id=(await namespace_org(session, principal, namespace.lower())).id)
    else:
        raise BadRequest("must specify one of org-id, resource-class, or namespace")
    return {"items": [_instance_body(row) for row in rows]}


async def operator_instances(
    session: AsyncSession, org: Organization | None, resource_class: str | None
) -> list[dict[str, Any]]:
    rows = await runners.instances(session, org_id=org.id if org else None, resource_class=resource_class)
    return [_instance_body(row) for row in rows]


async def operator_classes(session: AsyncSession, org: Organization | None) -> list[dict[str, Any]]:
    rows = await runners.classes_of(session, org.id) if org else await runners.all_classes(session)
    return [{**_class_body(row), "org_id": row.org_id} for row in rows]
