"""Runs one task's steps in a fresh directory, through the backend the runner offers for it (the
host, or containers: agent/backends/), and says how the task ended."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from circlet.agent.backends import Backend, DockerMode, RunnerOffer, choose_backend
from circlet.agent.backends.choice import DEFAULT_HOST_JOB_IMAGE
from circlet.agent.containers import ContainerEngine
from circlet.agent.context import EventSink, StepContext, StepOutcome, StepOutput, TaskStorage
from circlet.agent.continuation import install_curl_wrapper
from circlet.agent.isolation import JobUser
from circlet.agent.job_tools import RELEASES_FILE
from circlet.agent.masking import Masker
from circlet.agent.process import ProcessGroups
from circlet.agent.protocol import Step, Task
from circlet.agent.steps import step_type
from circlet.agent.steps.ssh_keys import key_secrets
from circlet.agent.task_dirs import TaskDirs

log = logging.getLogger("circlet.agent")

TaskStatus = Literal["success", "failed", "canceled", "timedout", "infrastructure_fail"]
AGENT_STEPS_EXCEPT = ("run", "deploy")
"""Every other step type is run by the agent itself, as its own user, writing files for the job."""


@dataclass(frozen=True)
class TaskResult:
    status: TaskStatus
    message: str | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskRunner:
    """Runs ``task`` once. ``stop`` (from another coroutine) kills what runs and ends the task with
    the status given; steps not yet started do not run. ``backend`` replaces the one the runner's
    offer would choose (tests)."""

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
        host_job_image: str | None = DEFAULT_HOST_JOB_IMAGE,
        server_url: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.task = task
        self._server_url = server_url
        self._sink = sink
        self._storage = storage
        self._releases_sent = 0  # lines of the job's deploy markers already sent
        self._dirs = TaskDirs(work_root / f"task-{task.task_id}")
        self._groups = ProcessGroups(kill_grace)
        offer = RunnerOffer(docker, engine, job_user, refuse_host_jobs, host_job_image)
        chosen = backend if backend is not None else choose_backend(task, self._dirs, self._groups, offer)
        self._refusal = chosen if isinstance(chosen, str) else None
        self._backend: Backend | None = None if isinstance(chosen, str) else chosen
        secrets = [] if self._backend is None else list(self._backend.secrets)
        self._starting: asyncio.Task[str | None] | None = None
        self._masker = Masker([*task.secrets, *key_secrets(task.ssh_keys), *secrets])
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
        if self._backend is None:
            return TaskResult("failed", self._refusal)
        backend = self._backend
        self._dirs.create(backend.job_user, confined=backend.confined)
        if self._server_url is not None and "CIRCLE_CONTINUATION_KEY" in self.task.environment:
            install_curl_wrapper(self._dirs.bin, self._server_url)
        if self.task.test_timings is not None:
            self._dirs.timings.write_text(json.dumps(self.task.test_timings))
            self._dirs.give(self._dirs.timings)
        try:
            problem = await self._setup(backend)
            if problem is not None:
                return self._stopped or TaskResult("failed", problem)
            return await self._run_steps(backend)
        finally:
            self._job_ending = True
            await self._groups.kill_all()
            await backend.stop()
            await asyncio.gather(*self._background, return_exceptions=True)
            if self._stopping is not None:
                await self._stopping
            await backend.destroy()
            remove_tree(self._dirs.root)
            if self._dirs.source.exists():
                remove_tree(self._dirs.source)

    async def _setup(self, backend: Backend) -> str | None:
        """Set the backend up (a pull may take minutes, a stop cancels it); its notes go at the top of
        the first step's output."""
        notes: list[str] = []

        async def note(line: str) -> None:
            notes.append(line + "\n")

        self._starting = asyncio.create_task(backend.setup(note))
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

    async def _run_steps(self, backend: Backend) -> TaskResult:
        working_directory = self._dirs.expand(self.task.executor.working_directory, self._dirs.home)
        self._dirs.make_dir(working_directory)
        environment = self._with_runner_variables(backend.environment(self.task.environment))
        for index, step in enumerate(self.task.steps):
            if self._stopped is not None:
                break
            if not self._should_run(step):
                at = now()
                await self._sink.step_event(index, step.name, "skipped", None, at, at)
                continue
            run = self._run_step(backend, index, step, working_directory, environment)
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
        self, backend: Backend, index: int, step: Step, working_directory: Path, environment: Mapping[str, str]
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
            backend=backend,
            storage=self._storage,
        )

        async def run_nested(nested: Step) -> StepOutcome:
            try:
                return await step_type(nested.type).handler(dataclasses.replace(context, step=nested))
            finally:
                if nested.type not in AGENT_STEPS_EXCEPT:
                    await backend.agent_wrote()

        context.run_nested = run_nested
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
        if step.type not in AGENT_STEPS_EXCEPT:
            await backend.agent_wrote()
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

    def _result(self) -> TaskResult:
        if self._stopped is not None:
            return self._stopped
        if self._failure is not None:
            status: TaskStatus = "timedout" if self._failure.status == "timedout" else "failed"
            return TaskResult(status, self._failure.reason)
        return TaskResult("success")

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
