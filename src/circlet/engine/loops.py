"""Background work of an API process: compiling triggered pipelines, and reaping lost leases.

Triggering answers as soon as the pipeline row is committed; the config is read here and compiled
in a worker process (engine/compiling.py), then the workflows are created in a unit of work of its
own. A pipeline left `pending` by a process that died is picked up again by a later sweep of any
process, a bounded number of times: a config that kills every process compiling it ends `errored`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from circlet.config import DEFAULT_LIMITS, CompiledConfig, ConfigInvalid, ExpansionLimits
from circlet.db.engine import Database
from circlet.db.models import Pipeline
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.compiling import Compiled, CompilePool, CompileRefused, CompileRequest
from circlet.engine.orchestrator import Orchestrator, continuation_key, key_hash
from circlet.mirrors.git_mirror import GitError, GitMirrors, MissingFile, RepoSource
from circlet.projects import repository as projects

log = logging.getLogger("circlet.engine")

REAP_INTERVAL_SECONDS = 1.0
LEASE_LOST = "The runner stopped reporting (its lease expired): the task was abandoned."
MAX_STORED_ERRORS = 100
DID_NOT_FINISH = "compilation did not finish: it was interrupted {attempts} times (compile_attempts)"


def error_lines(errors: list[str]) -> str:
    """The first errors, one a line, then how many more there were."""
    lines = errors[:MAX_STORED_ERRORS]
    if len(errors) > MAX_STORED_ERRORS:
        lines.append(f"and {len(errors) - MAX_STORED_ERRORS} more")
    return "\n".join(lines) or "invalid config"


def config_errors(exc: ConfigInvalid) -> str:
    return error_lines([error.format() for error in exc.errors])


def config_warnings(compiled: CompiledConfig) -> list[dict[str, str]]:
    """A pipeline keeps its config's warnings in ``errors`` (its state says it was not
    stopped by them), each ``{"type": "config", "message": "warning: file:line:col: ..."}``."""
    return [{"type": "config", "message": f"warning: {warning.format()}"} for warning in compiled.warnings]


@dataclass
class EngineLoops:
    database: Database
    mirrors: GitMirrors
    orchestrator: Orchestrator
    pool: CompilePool
    orb_dirs: list[Path] | None = None
    limits: ExpansionLimits = DEFAULT_LIMITS
    attempts: int = 3
    retry_after: timedelta = timedelta(seconds=120)
    _running: set[asyncio.Task[Any]] = field(default_factory=set)
    _processing: set[uuid.UUID] = field(default_factory=set)  # queued or compiling here: not interrupted

    async def compile(
        self, org_id: uuid.UUID, pipeline: Pipeline, source: str, parameters: dict[str, Any] | None = None
    ) -> Compiled:
        """Compile ``source`` for ``pipeline`` off the event loop; raises CompileRefused."""
        request = CompileRequest(
            source,
            pipeline.config_file_path,
            pipeline.parameters if parameters is None else parameters,
            pipeline.values,
            self.orb_dirs,
            self.limits,
        )
        return await self.pool.compile(org_id, request)

    def submit(self, pipeline_id: uuid.UUID) -> None:
        """Process a committed pipeline in the background of this process."""
        task = asyncio.get_running_loop().create_task(self.process(pipeline_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        self.pool.close()

    async def process(self, pipeline_id: uuid.UUID) -> None:
        self._processing.add(pipeline_id)
        try:
            await self._process(pipeline_id)
        except Exception:
            log.exception("processing a pipeline failed", extra={"pipeline_id": str(pipeline_id)})
            await self._fail(pipeline_id, "other", "circlet could not process this pipeline.")
        finally:
            self._processing.discard(pipeline_id)

    async def _process(self, pipeline_id: uuid.UUID) -> None:
        async with self.database.reading() as session:
            pipeline = await engine.get_pipeline(session, pipeline_id)
            if pipeline is None or pipeline.state != states.PIPELINE_PENDING:
                return
            found = await projects.get_project(session, pipeline.project_id)
            assert found is not None
            org_id = found.org_id
        source = pipeline.inline_config
        if source is None:
            try:
                source = await self._read_config(
                    pipeline, RepoSource(found.id, pipeline.vcs_url, found.repo_set_by_operator)
                )
            except MissingFile as exc:
                await self._fail(pipeline_id, "config-fetch", str(exc))
                return
            except GitError as exc:
                await self._fail(pipeline_id, "config-fetch", str(exc))
                return
        try:
            result = await self.compile(org_id, pipeline, source)
        except CompileRefused as exc:
            await self._fail(pipeline_id, exc.kind, error_lines(exc.errors), source)
            return
        try:
            await self._create(pipeline_id, source, result, org_id)
        except ConfigInvalid as exc:
            await self._fail(pipeline_id, "config", config_errors(exc), source)

    async def _create(self, pipeline_id: uuid.UUID, source: str, result: Compiled, org_id: uuid.UUID) -> None:
        compiled = result.config
        async with self.database.writing() as session:
            locked = await engine.get_pipeline(session, pipeline_id, lock=True)
            if locked is None or locked.state != states.PIPELINE_PENDING:
                return
            locked.source = source
            locked.compiled = result.rendered
            locked.errors = config_warnings(compiled)
            if compiled.setup:
                locked.setup_source, locked.compiled_setup = locked.source, locked.compiled
                locked.continuation_key_hash = key_hash(
                    continuation_key(self.orchestrator.continuation_secret, locked.id)
                )
                set_pipeline_state(locked, states.PIPELINE_SETUP)
            else:
                set_pipeline_state(locked, states.PIPELINE_CREATED)
            await self.orchestrator.create_workflows(session, locked, compiled, org_id, setup=compiled.setup)

    async def _read_config(self, pipeline: Pipeline, repo: RepoSource) -> str:
        path = self.mirrors.path_for(repo)
        revision = pipeline.config_revision or pipeline.revision or ""
        try:
            return await self.mirrors.read_file(path, revision, pipeline.config_file_path)
        except MissingFile:
            # Another host's process may have fetched the commit; our mirror may not have it yet.
            path = await self.mirrors.fetch(repo)
            return await self.mirrors.read_file(path, revision, pipeline.config_file_path)

    async def _fail(self, pipeline_id: uuid.UUID, kind: str, message: str, source: str = "") -> None:
        async with self.database.writing() as session:
            pipeline = await engine.get_pipeline(session, pipeline_id, lock=True)
            if pipeline is None or pipeline.state != states.PIPELINE_PENDING:
                return
            set_pipeline_state(pipeline, states.PIPELINE_ERRORED)
            pipeline.errors = [{"type": kind, "message": message}]
            pipeline.source = source

    # -- periodic sweeps --------------------------------------------------------------------------

    async def run_sweeps(self) -> None:
        """Runs in the background from start-up; left-over pipelines are resumed from the second
        sweep on, so a restarted server answers before it compiles old work."""
        sweeps = 0
        pending_every = max(1, round(self.retry_after.total_seconds() / 6 / REAP_INTERVAL_SECONDS))
        while True:
            try:
                await self.reap()
                if sweeps >= 1 and (sweeps - 1) % pending_every == 0:
                    await self.resume_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine sweep failed")
            sweeps += 1
            await asyncio.sleep(REAP_INTERVAL_SECONDS)

    async def reap(self) -> int:
        """Tasks whose runner stopped heartbeating end as `infrastructure_fail` (no retry)."""
        async with self.database.reading() as session:
            expired = await engine.expired_tasks(session, utcnow(), 100)
        if not expired:
            return 0
        async with self.database.writing() as session:
            reaped = 0
            for task_id, workflow_id in expired:
                # Workflow, then job, then task: the lock order of every writer.
                await engine.get_workflow(session, workflow_id, lock=True)
                task = await engine.get_task(session, task_id)
                assert task is not None
                job = await engine.lock_job(session, task.job_id)
                task = await engine.lock_task(session, task_id)
                assert job is not None and task is not None
                if task.status != states.RUNNING or task.lease_expires_at is None or task.lease_expires_at >= utcnow():
                    continue
                states.check(states.TASK_TRANSITIONS, task.status, states.INFRASTRUCTURE_FAIL)
                task.status = states.INFRASTRUCTURE_FAIL
                task.message = LEASE_LOST
                task.ended_at = utcnow()
                project = await projects.get_project(session, job.project_id)
                assert project is not None
                await self.orchestrator.settle_job(session, job, project.org_id)
                reaped += 1
        return reaped

    async def resume_pending(self) -> None:
        async with self.database.reading() as session:
            stale = await engine.pending_pipelines(session, utcnow() - self.retry_after, 20)
        for pipeline_id in stale:
            if pipeline_id not in self._processing and await self._count_attempt(pipeline_id):
                self.submit(pipeline_id)

    async def _count_attempt(self, pipeline_id: uuid.UUID) -> bool:
        """Count one more attempt at a pipeline left pending (its compile was interrupted), or end
        it `errored` once it had all its attempts. The count is committed before the compile, so
        a compile that takes its process down still counts."""
        async with self.database.writing() as session:
            pipeline = await engine.get_pipeline(session, pipeline_id, lock=True)
            if pipeline is None or pipeline.state != states.PIPELINE_PENDING:
                return False
            if pipeline.updated_at >= utcnow() - self.retry_after:
                return False  # another process took it up meanwhile
            if pipeline.compile_attempts >= self.attempts:
                set_pipeline_state(pipeline, states.PIPELINE_ERRORED)
                pipeline.errors = [
                    {"type": "other", "message": DID_NOT_FINISH.format(attempts=pipeline.compile_attempts)}
                ]
                return False
            pipeline.compile_attempts += 1
            pipeline.updated_at = utcnow()
            return True


def set_pipeline_state(pipeline: Pipeline, state: str) -> None:
    states.check(states.PIPELINE_TRANSITIONS, pipeline.state, state)
    pipeline.state = state
    pipeline.updated_at = utcnow()
