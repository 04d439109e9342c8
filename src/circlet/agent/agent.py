"""The agent loop: claim a task of the runner's resource class, run it while heartbeating, complete
it; ``max_tasks`` such loops side by side. A first SIGTERM/SIGINT stops claiming and ends running
tasks as ``infrastructure_fail``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from circlet.agent.backends import DEFAULT_HOST_JOB_IMAGE, DockerMode
from circlet.agent.containers import ContainerEngine, EngineChoice, detect_engine, remove_leftovers
from circlet.agent.executor import TaskResult, TaskRunner
from circlet.agent.isolation import IsolationError, JobUser, forbid_inspection, is_root, job_users, reachable_by_all
from circlet.agent.protocol import (
    Backoff,
    OutputShipper,
    ProtocolError,
    RunnerClient,
    Task,
    TaskClient,
    TaskLost,
    Unauthorized,
)

log = logging.getLogger("circlet.agent")

SHUTDOWN_PATIENCE = 10.0
"""Seconds a shutting-down agent keeps trying to complete its tasks (the server may be going too)."""


@dataclass(frozen=True)
class AgentOptions:
    resource_class: str = "local"
    work_dir: Path | None = None
    max_tasks: int = 1
    docker: DockerMode = "host"
    """docker jobs when there is no container engine: ``host`` runs them here, ``fail`` refuses them."""
    container_engine: EngineChoice = "none"
    container_engine_args: tuple[str, ...] = ()
    """Global arguments of the engine's CLI (e.g. ``--runtime runc --cgroup-manager=cgroupfs``)."""
    containers_conf: Path | None = None
    """podman only: the ``containers.conf`` it reads (``CONTAINERS_CONF``) instead of the system's."""
    once: bool = False
    """Run one task, then exit."""
    wait_seconds: int = 30
    kill_grace: float = 5.0
    job_users: tuple[str, ...] = ()
    """As root: the users jobs run as, one per concurrent task (default ``circlet-job-N``, created)."""
    refuse_host_jobs: str | None = None
    """Not root: refuse jobs that would run on this host as the agent's own user, with this message
    (the embedded runner without ``--trust-jobs``)."""
    host_job_image: str | None = DEFAULT_HOST_JOB_IMAGE
    """Where such a host job runs instead when the container engine is rootless (None: refused)."""


class HttpSink:
    """Step events and output of one task, to the server: output goes through the shipper, and is
    sent before the event that ends its step."""

    def __init__(self, client: TaskClient, shipper: OutputShipper) -> None:
        self._client = client
        self._shipper = shipper

    async def step_event(
        self, index: int, name: str, status: str, exit_code: int | None, started_at: str, ended_at: str | None
    ) -> None:
        await self._shipper.flush()
        await self._client.step_event(index, name, status, exit_code, started_at, ended_at)

    async def step_output(self, index: int, data: bytes) -> None:
        await self._shipper.write(index, data)


class Agent:
    def __init__(self, client: RunnerClient, options: AgentOptions) -> None:
        self._client = client
        self._options = options
        self._stopping = asyncio.Event()
        self._running: dict[str, TaskRunner] = {}
        self._started = 0
        self._refused: Unauthorized | None = None
        self._engine: ContainerEngine | None = None
        self.completed: list[tuple[str, TaskResult]] = []
        """(task id, result) of every task completed, for tests and the exit status."""

    def shutdown(self, reason: str) -> None:
        """Stop claiming; end running tasks as ``infrastructure_fail``."""
        if self._stopping.is_set():
            return
        log.info("shutting down", extra={"reason": reason, "running_tasks": len(self._running)})
        self._stopping.set()
        for runner in self._running.values():
            runner.stop("infrastructure_fail", f"the runner was shut down ({reason}) while the task ran")

    async def run(self) -> None:
        """Until shut down (or, with ``once``, until one task is done)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.shutdown, signal.Signals(signum).name)
        try:
            options = self._options
            forbid_inspection()
            workers = 1 if options.once else max(1, options.max_tasks)
            users: list[JobUser | None] = [None] * workers
            if is_root():
                users = list(await asyncio.to_thread(job_users, options.job_users, workers))
                private_tmp = all(user.private_tmp for user in users if user)
                log.info("jobs run as", extra={"job_users": [u.name for u in users if u], "private_tmp": private_tmp})
            self._engine = await detect_engine(
                options.container_engine, options.container_engine_args, options.containers_conf
            )
            if self._engine is not None:
                await remove_leftovers(self._engine)
            if users[0] is None and options.refuse_host_jobs is not None:
                self._log_host_jobs()
            with self._work_root(jobs_enter=users[0] is not None) as work_root:
                await asyncio.gather(*(self._work(work_root, user) for user in users))
            if self._refused is not None:
                raise self._refused
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _log_host_jobs(self) -> None:
        """Where this runner's host jobs go, since it may not run them as its own user."""
        engine, image = self._engine, self._options.host_job_image
        if engine is not None and engine.rootless and image:
            log.info("host jobs run in rootless containers", extra={"engine": engine.kind, "image": image})
        else:
            why = "no rootless container engine" if image else "no host job image"
            log.warning("host jobs are refused", extra={"reason": f"not root, jobs not trusted, {why}"})

    @contextlib.contextmanager
    def _work_root(self, *, jobs_enter: bool) -> Iterator[Path]:
        """Where task directories go. Job users must be able to pass through it to their own task
        directory (0711: they cannot list it, so they do not learn other tasks' names)."""
        if self._options.work_dir is not None:
            self._options.work_dir.mkdir(parents=True, exist_ok=True)
            if jobs_enter:
                prepare_work_root(self._options.work_dir)
            yield self._options.work_dir
        else:
            with tempfile.TemporaryDirectory(prefix="circlet-runner-") as directory:
                if jobs_enter:
                    prepare_work_root(Path(directory))
                yield Path(directory)

    async def _work(self, work_root: Path, job_user: JobUser | None) -> None:
        backoff = Backoff(first=1.0, most=30.0)
        while not self._stopping.is_set():
            if self._options.once and self._started:
                return
            try:
                task = await self._claim()
            except Unauthorized as exc:
                # A revoked token: this worker claims nothing more, and the tasks other workers
                # hold run to their end (as CircleCI's runners do); the agent exits after them.
                if self._refused is None:
                    log.error("the runner token was refused", extra={"running_tasks": len(self._running)})
                self._refused = exc
                return
            except ProtocolError as exc:
                delay = backoff.delay()
                log.error("claim refused", extra={"problem": str(exc), "retry_in": round(delay, 1)})
                await self._sleep(delay)
                continue
            if task is None:
                continue
            backoff = Backoff(first=1.0, most=30.0)
            self._started += 1
            await self._run_task(task, work_root, job_user)

    async def _claim(self) -> Task | None:
        """One long-poll, given up at once on shutdown."""
        claim = asyncio.ensure_future(self._client.claim(self._options.resource_class, self._options.wait_seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([claim, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not claim.done():
            claim.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim
            return None
        stopping.cancel()
        return claim.result()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run_task(self, task: Task, work_root: Path, job_user: JobUser | None) -> None:
        ids = {"task_id": task.task_id, "job": task.job.name, "job_number": task.job.number}
        log.info("task claimed", extra=ids)
        task_client = self._client.for_task(task)
        shipper = OutputShipper(task_client)
        runner = TaskRunner(
            task,
            HttpSink(task_client, shipper),
            work_root=work_root,
            docker=self._options.docker,
            kill_grace=self._options.kill_grace,
            storage=task_client,
            engine=self._engine,
            job_user=job_user,
            refuse_host_jobs=None if job_user is not None else self._options.refuse_host_jobs,
            host_job_image=self._options.host_job_image,
            server_url=self._client.url,
        )
        self._running[task.task_id] = runner
        if self._stopping.is_set():
            runner.stop("infrastructure_fail", "the runner was shut down before the task started")
        execution = asyncio.create_task(runner.run())
        heartbeat = asyncio.create_task(self._heartbeat(task, task_client, runner, execution))
        try:
            result = await execution
            await shipper.aclose()
            heartbeat.cancel()  # no heartbeat may follow the completion
            patience = SHUTDOWN_PATIENCE if self._stopping.is_set() else None
            await task_client.complete(result.status, result.message, patience=patience)
            self.completed.append((task.task_id, result))
            log.info("task completed", extra={**ids, "status": result.status})
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            log.warning("task abandoned", extra={**ids, "problem": "lease lost"})
        except TaskLost as exc:
            log.warning("task abandoned", extra={**ids, "problem": str(exc)})
        except ProtocolError as exc:
            log.error("task not completed", extra={**ids, "problem": str(exc)})
        except Exception:
            log.exception("runner error", extra=ids)
            with contextlib.suppress(Exception):
                await task_client.complete("infrastructure_fail", "the runner failed while running the task")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await shipper.aclose()
            del self._running[task.task_id]

    async def _heartbeat(
        self, task: Task, client: TaskClient, runner: TaskRunner, execution: asyncio.Task[TaskResult]
    ) -> None:
        """Every ``heartbeat_seconds``: extend the lease, and cancel the task when asked. A lost lease
        ends the task at once, without completing it."""
        while True:
            await asyncio.sleep(task.heartbeat_seconds)
            try:
                cancel = await client.heartbeat()
            except TaskLost as exc:
                log.warning("lease lost", extra={"task_id": task.task_id, "problem": str(exc)})
                execution.cancel()
                return
            except (ProtocolError, ValueError) as exc:
                log.warning("heartbeat refused", extra={"task_id": task.task_id, "problem": str(exc)})
                continue
            if cancel:
                log.info("task canceled by the server", extra={"task_id": task.task_id})
                runner.stop("canceled", "canceled")


def prepare_work_root(path: Path) -> None:
    """Owned by the agent, 0711; every directory above it must let others pass, or no job could
    reach its own directory."""
    path.chmod(0o711)
    blocked = reachable_by_all(path)
    if blocked is not None:
        raise IsolationError(
            f"the job users cannot reach the work directory {path}: {blocked} does not let other users pass"
            " (mode o+x); choose a --work-dir under directories that do"
        )


async def run_agent(client: RunnerClient, options: AgentOptions) -> int:
    """Run the agent to its end; the process exit status (2: the token was refused, 3: jobs could
    not be given an identity of their own)."""
    agent = Agent(client, options)
    try:
        await agent.run()
    except Unauthorized as exc:
        log.error("runner token refused", extra={"problem": str(exc)})
        return 2
    except IsolationError as exc:
        log.error("cannot isolate jobs", extra={"problem": str(exc)})
        return 3
    finally:
        await client.aclose()
    return 0
