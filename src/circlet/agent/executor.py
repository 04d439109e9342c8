"""Runs one task's steps in a fresh directory, on this host or (docker jobs, when the runner has a
container engine) in the job's containers, and says how the task ended."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import logging
import os
import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from circlet.agent.containers import (
    ContainerConfigError,
    ContainerEngine,
    TaskContainers,
    agent_python_mounts,
    container_specs,
)
from circlet.agent.context import EventSink, StepContext, StepOutcome, StepOutput, TaskDirs, TaskStorage
from circlet.agent.continuation import install_curl_wrapper
from circlet.agent.isolation import JobUser, reachable_by_all
from circlet.agent.job_tools import RELEASES_FILE
from circlet.agent.masking import Masker
from circlet.agent.process import ProcessGroups
from circlet.agent.protocol import Step, Task
from circlet.agent.steps import step_type
from circlet.agent.steps.ssh_keys import key_secrets

log = logging.getLogger("circlet.agent")

DockerMode = Literal["host", "fail"]
TaskStatus = Literal["success", "failed", "canceled", "timedout", "infrastructure_fail"]

HOST_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "SHELL", "TERM")
"""The only variables of the agent's own environment a job sees (never the runner token); ``PATH``
without the agent's virtual environment. ``USER``, ``LOGNAME`` and ``TMPDIR`` are the job's own."""
FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class TaskResult:
    status: TaskStatus
    message: str | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskRunner:
    """Runs ``task`` once. ``stop`` (from another coroutine) kills what runs and ends the task with
    the status given; steps not yet started do not run."""

    def __init__(
        self,
        task: Task,
        sink: EventSink,
        *,
        work_root: Path,
        docker: DockerMode = "host",
        kill_grace: float = 5.0,
        storage: TaskStorage | None = None,
        engine: ContainerEngine | None = None,
        job_user: JobUser | None = None,
        refuse_host_jobs: str | None = None,
        server_url: str | None = None,
    ) -> None:
        self.task = task
        self._server_url = server_url
        self._sink = sink
        self._storage = storage
        self._releases_sent = 0  # lines of the job's deploy markers already sent
        self._docker = docker
        self._engine = engine
        self._dirs = TaskDirs(work_root / f"task-{task.task_id}")
        self._groups = ProcessGroups(kill_grace)
        self._containers: TaskContainers | None = None
        self._container_problem: str | None = None
        registry_passwords: list[str] = []
        if engine is not None and task.executor.type == "docker":
            try:
                specs = container_specs(task.executor.raw, task.environment)
            except ContainerConfigError as exc:
                self._container_problem = str(exc)
            else:
                self._containers = TaskContainers(
                    engine, task.task_id, self._dirs.root, specs, read_only_mounts=agent_python_mounts()
                )
                registry_passwords = [spec.auth[1] for spec in specs if spec.auth is not None]
        self._refuse_host_jobs = refuse_host_jobs
        # A docker job in containers keeps the engine's own arrangement of users (runner/containers).
        self._job_user = job_user if self._containers is None else None
        self._starting: asyncio.Task[str | None] | None = None
        self._masker = Masker([*task.secrets, *key_secrets(task.ssh_keys), *registry_passwords])
        self._stopped: TaskResult | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[StepOutcome]] = []
        self._job_ending = False
        self._failure: StepOutcome | None = None
        self._first_step_note = ""

    def stop(self, status: TaskStatus, message: str) -> None:
        if self._stopped is not None:
            return
        self._stopped = TaskResult(status, message)
        self._stopping = asyncio.create_task(self._groups.kill_all())
        if self._starting is not None:
            self._starting.cancel()  # a pull may take minutes

    async def run(self) -> TaskResult:
        refusal = self._refusal()
        if refusal is not None:
            return TaskResult("failed", refusal)
        self._dirs.create(self._job_user)
        if self._server_url is not None and "CIRCLE_CONTINUATION_KEY" in self.task.environment:
            install_curl_wrapper(self._dirs.bin, self._server_url)
        if self.task.test_timings is not None:
            self._dirs.timings.write_text(json.dumps(self.task.test_timings))
            self._dirs.give(self._dirs.timings)
        try:
            if self._containers is not None:
                problem = await self._start_containers(self._containers)
                if problem is not None:
                    return self._stopped or TaskResult("failed", problem)
            return await self._run_steps()
        finally:
            self._job_ending = True
            await self._groups.kill_all()
            if self._job_user is not None:  # what left its process group: a daemon, a setsid
                await self._job_user.kill_all()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self._stopping is not None:
                await self._stopping
            if self._containers is not None:
                await self._containers.remove()
            remove_tree(self._dirs.root)
            if self._dirs.source.exists():
                remove_tree(self._dirs.source)

    async def _start_containers(self, containers: TaskContainers) -> str | None:
        """Start the job's containers; their notes go at the top of the first step's output."""
        notes: list[str] = []

        async def note(line: str) -> None:
            notes.append(line + "\n")

        self._starting = asyncio.create_task(containers.start(note))
        try:
            problem = await self._starting
        except asyncio.CancelledError:
            if self._stopped is None:
                raise
            return "canceled while the job's containers were starting"
        finally:
            self._starting = None
        self._first_step_note = "".join(notes)
        if problem is not None:
            log.warning("containers did not start", extra={"task_id": self.task.task_id, "problem": problem})
            return self._masker.mask(problem.encode()).decode()
        return None

    def _refusal(self) -> str | None:
        executor = self.task.executor
        if self._container_problem is not None:
            return self._container_problem
        if self._containers is not None:
            return None
        if self._refuse_host_jobs is not None and executor.type in ("docker", "machine", "runner", "host"):
            return self._refuse_host_jobs
        if executor.type == "docker" and self._docker == "host":
            self._first_step_note = (
                f"circlet runner: warning: this docker job runs directly on the runner's host (--docker host); "
                f"image {executor.image or '(none)'} is not used, no service containers, host tools only\n"
            )
            return None
        if executor.type == "docker":
            return "docker jobs are not supported by this runner (it was started with --docker fail)"
        if executor.type in ("machine", "runner", "host"):
            return None
        return f"{executor.type} jobs are not supported by this runner: it runs jobs on its own host (machine, docker)"

    async def _run_steps(self) -> TaskResult:
        working_directory = self._dirs.expand(self.task.executor.working_directory, self._dirs.home)
        self._dirs.make_dir(working_directory)
        environment = (
            self._environment(working_directory)
            if self._containers is None
            else self._container_environment(self._containers)
        )
        for index, step in enumerate(self.task.steps):
            if self._stopped is not None:
                break
            if not self._should_run(step):
                at = now()
                await self._sink.step_event(index, step.name, "skipped", None, at, at)
                continue
            run = self._run_step(index, step, working_directory, environment)
            if step.args.get("background") is True:
                self._background.append(asyncio.create_task(run))
                continue
            outcome = await run
            if outcome.status == "canceled" and self._stopped is not None:
                break
        self._job_ending = True
        await self._groups.kill_all()
        await asyncio.gather(*self._background)
        return self._result()

    def _should_run(self, step: Step) -> bool:
        """By the step's ``when``; after a ``step halt`` (its marker file) no step runs."""
        if self._dirs.halt_marker.exists():
            return False
        when = step.args.get("when") or step_type(step.type).default_when
        if when == "always":
            return True
        return (when == "on_fail") == (self._failure is not None)

    async def _run_step(
        self, index: int, step: Step, working_directory: Path, environment: Mapping[str, str]
    ) -> StepOutcome:
        started_at = now()
        await self._sink.step_event(index, step.name, "running", None, started_at, None)
        output = StepOutput(index, self._sink, self._masker.stream())
        if self._first_step_note:
            note, self._first_step_note = self._first_step_note, ""
            await output.write(note.encode())
        context = StepContext(
            task=self.task,
            step=step,
            index=index,
            dirs=self._dirs,
            working_directory=working_directory,
            environment=environment,
            groups=self._groups,
            output=output,
            storage=self._storage,
            containers=self._containers,
            job_user=self._job_user,
        )

        async def run_nested(nested: Step) -> StepOutcome:
            self._note_host_writes(nested)
            return await step_type(nested.type).handler(dataclasses.replace(context, step=nested))

        context.run_nested = run_nested
        self._note_host_writes(step)
        log.info("step started", extra={"task_id": self.task.task_id, "step": index, "step_name": step.name})
        try:
            outcome = await step_type(step.type).handler(context)
        except OSError as exc:
            await output.line(f"circlet runner: {exc.strerror or exc}")
            outcome = StepOutcome("failed", None, f"step {step.name!r} could not run: {exc.strerror or exc}")
        if self._stopped is not None or (self._job_ending and step.args.get("background") is True):
            outcome = StepOutcome("canceled", None, outcome.reason)
        await self._send_releases(output)
        await output.finish()
        await self._sink.step_event(index, step.name, outcome.status, outcome.exit_code, started_at, now())
        log.info(
            "step ended",
            extra={"task_id": self.task.task_id, "step": index, "step_name": step.name, "status": outcome.status},
        )
        if self._job_user is not None and step.type not in ("run", "deploy"):
            await asyncio.to_thread(self._dirs.give, self._dirs.root)  # what the agent wrote for the job
        if outcome.status in ("failed", "timedout") and (self._failure is None or outcome.status == "timedout"):
            self._failure = outcome
        return outcome

    async def _send_releases(self, output: StepOutput) -> None:
        """The deploy markers the step's ``circleci run release`` queued, sent in order, each once."""
        path = self._dirs.data / RELEASES_FILE
        if self._storage is None or not path.exists():
            return
        lines = (await asyncio.to_thread(path.read_bytes)).splitlines()
        for line in lines[self._releases_sent :]:
            self._releases_sent += 1
            try:
                marker = json.loads(line)
            except ValueError:
                await output.line("circleci run release: an unreadable marker was skipped")
                continue
            status, text = await self._storage.record_release(marker)
            action = marker.get("action") if isinstance(marker, dict) else None
            verdict = f"recorded ({text})" if status < 400 else f"refused: {text}"
            await output.line(f"circleci run release {action}: {verdict}")

    def _note_host_writes(self, step: Step) -> None:
        """Steps other than ``run`` write as the agent: the container's user must get the files back."""
        if self._containers is not None and step.type not in ("run", "deploy"):
            self._containers.ownership_stale = True

    def _result(self) -> TaskResult:
        if self._stopped is not None:
            return self._stopped
        if self._failure is not None:
            status: TaskStatus = "timedout" if self._failure.status == "timedout" else "failed"
            return TaskResult(status, self._failure.reason)
        return TaskResult("success")

    def _environment(self, working_directory: Path) -> dict[str, str]:
        """The host's basics, then the task's variables, then what only the runner knows."""
        environment = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        environment.update({name: value for name, value in os.environ.items() if name.startswith("LC_")})
        environment["PATH"] = host_path(environment.get("PATH", ""), other_user=self._job_user is not None)
        user = self._job_user.name if self._job_user is not None else getpass.getuser()
        private_tmp = self._job_user is not None and self._job_user.private_tmp
        environment.update({"USER": user, "LOGNAME": user, "TMPDIR": "/tmp" if private_tmp else str(self._dirs.tmp)})
        environment.update(self.task.environment)
        return self._with_runner_variables(environment)

    def _container_environment(self, containers: TaskContainers) -> dict[str, str]:
        """In the primary: the image's own environment (the engine gives it), then the primary's
        ``environment``, the task's variables, and what only the runner knows. Nothing of the
        agent's host environment: its ``PATH`` is the image's."""
        environment = dict(containers.specs[0].environment)
        environment.update(self.task.environment)
        environment["PATH"] = environment.get("PATH") or containers.shell.path
        return self._with_runner_variables(environment)

    def _with_runner_variables(self, environment: dict[str, str]) -> dict[str, str]:
        """The task's ``bin/`` first on ``PATH``, and the variables only the runner knows."""
        environment["PATH"] = f"{self._dirs.bin}{os.pathsep}{environment['PATH']}"
        job = self.task.job
        environment.update(
            {
                "HOME": str(self._dirs.home),
                "CIRCLE_WORKING_DIRECTORY": self.task.executor.working_directory,
                "CIRCLE_NODE_INDEX": str(job.parallel_index),
                "CIRCLE_NODE_TOTAL": str(job.parallelism),
                "CIRCLE_INTERNAL_TASK_DATA": str(self._dirs.data),
                "BASH_ENV": str(self._dirs.bash_env),
            }
        )
        return environment


def host_path(path: str, *, other_user: bool = False) -> str:
    """The agent's ``PATH`` without its own virtual environment's ``bin`` (nor ``$VIRTUAL_ENV``'s):
    a job's ``python``/``pip`` must never be the agent's (issue 11); the job's helpers name the
    agent's interpreter themselves. For a job of ``other_user``, only the directories other users
    may enter (root's ``~/.pyenv/shims`` would be found, then refused)."""
    own = {os.path.realpath(os.path.join(prefix, "bin")) for prefix in (sys.prefix, sys.exec_prefix)}
    if os.environ.get("VIRTUAL_ENV"):
        own.add(os.path.realpath(os.path.join(os.environ["VIRTUAL_ENV"], "bin")))
    if sys.prefix == sys.base_prefix and not os.environ.get("VIRTUAL_ENV"):
        own = set()  # a system interpreter's bin is the system's
    kept = [entry for entry in path.split(os.pathsep) if entry and os.path.realpath(entry) not in own]
    if other_user:
        kept = [entry for entry in kept if os.path.isdir(entry) and reachable_by_all(Path(entry)) is None]
    return os.pathsep.join(kept) or FALLBACK_PATH


def remove_tree(path: Path) -> None:
    """Remove a task's directory, read-only parts included (git makes some)."""

    def make_writable(function: object, failed: str, _: object) -> None:
        try:
            os.chmod(os.path.dirname(failed), stat.S_IRWXU)
            os.chmod(failed, stat.S_IRWXU)
            if os.path.isdir(failed):
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable)
