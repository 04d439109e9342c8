"""Background work of an API process: compiling triggered pipelines, and reaping lost leases.

Triggering answers as soon as the pipeline row is committed; the config is read and compiled
here, in a unit of work of its own. A pipeline left `pending` by a process that died is picked up
again by the next sweep of any process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from circlet.config import CompiledConfig, ConfigInvalid, compile_config
from circlet.db.engine import Database
from circlet.db.models import Pipeline
from circlet.db.types import utcnow
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.orchestrator import Orchestrator, continuation_key, key_hash
from circlet.pipelines.git_mirror import GitError, GitMirrors, MissingFile
from circlet.projects import repository as projects

log = logging.getLogger("circlet.engine")

REAP_INTERVAL_SECONDS = 1.0
PENDING_SWEEP_EVERY = 10  # sweeps: pipelines left pending by a dead process are looked for every 10 s
STALE_PENDING = timedelta(seconds=60)
LEASE_LOST = "The runner stopped reporting (its lease expired): the task was abandoned."


def config_errors(exc: ConfigInvalid) -> str:
    return "\n".join(error.format() for error in exc.errors) or "invalid config"


def config_warnings(compiled: CompiledConfig) -> list[dict[str, str]]:
    """A pipeline keeps its config's warnings in ``errors`` (its state says it was not
    stopped by them), each ``{"type": "config", "message": "warning: file:line:col: ..."}``."""
    return [{"type": "config", "message": f"warning: {warning.format()}"} for warning in compiled.warnings]


def compile_for(pipeline: Pipeline, source: str, orb_dirs: list[Path] | None) -> CompiledConfig:
    return compile_config(
        source,
        filename=pipeline.config_file_path,
        pipeline_parameters=pipeline.parameters,
        pipeline_values=pipeline.values,
        orb_dirs=orb_dirs,
    )


@dataclass
class Processor:
    database: Database
    mirrors: GitMirrors
    orchestrator: Orchestrator
    orb_dirs: list[Path] | None = None
    _running: set[asyncio.Task[Any]] = field(default_factory=set)

    def submit(self, pipeline_id: uuid.UUID) -> None:
        """Process a committed pipeline in the background of this process."""
        task = asyncio.get_running_loop().create_task(self.process(pipeline_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def process(self, pipeline_id: uuid.UUID) -> None:
        try:
            await self._process(pipeline_id)
        except Exception:
            log.exception("processing a pipeline failed", extra={"pipeline_id": str(pipeline_id)})
            await self._fail(pipeline_id, "other", "circlet could not process this pipeline.")

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
                source = await self._read_config(pipeline)
            except MissingFile as exc:
                await self._fail(pipeline_id, "config-fetch", str(exc))
                return
            except GitError as exc:
                await self._fail(pipeline_id, "config-fetch", str(exc))
                return
        try:
            compiled = compile_for(pipeline, source, self.orb_dirs)
        except ConfigInvalid as exc:
            await self._fail(pipeline_id, "config", config_errors(exc), source)
            return
        try:
            await self._create(pipeline_id, source, compiled, org_id)
        except ConfigInvalid as exc:
            await self._fail(pipeline_id, "config", config_errors(exc), source)

    async def _create(self, pipeline_id: uuid.UUID, source: str, compiled: CompiledConfig, org_id: uuid.UUID) -> None:
        async with self.database.writing() as session:
            locked = await engine.get_pipeline(session, pipeline_id, lock=True)
            if locked is None or locked.state != states.PIPELINE_PENDING:
                return
            locked.source = source
            locked.compiled = compiled.to_yaml()
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

    async def _read_config(self, pipeline: Pipeline) -> str:
        path = self.mirrors.path_for(pipeline.vcs_url)
        revision = pipeline.config_revision or pipeline.revision or ""
        try:
            return await self.mirrors.read_file(path, revision, pipeline.config_file_path)
        except MissingFile:
            # Another host's process may have fetched the commit; our mirror may not have it yet.
            path = await self.mirrors.fetch(pipeline.vcs_url)
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
        sweeps = 0
        while True:
            try:
                await self.reap()
                if sweeps % PENDING_SWEEP_EVERY == 0:
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
            stale = await engine.pending_pipelines(session, utcnow() - STALE_PENDING, 20)
        for pipeline_id in stale:
            await self.process(pipeline_id)


def set_pipeline_state(pipeline: Pipeline, state: str) -> None:
    states.check(states.PIPELINE_TRANSITIONS, pipeline.state, state)
    pipeline.state = state
    pipeline.updated_at = utcnow()
