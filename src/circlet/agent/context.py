"""What a step handler gets: the task, its directories and environment, a masked output stream and
the task's process groups; and what it gives back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from circlet.agent.backends import Backend
from circlet.agent.isolation import JobUser
from circlet.agent.masking import MaskingStream
from circlet.agent.process import ProcessGroups, ProcessResult, run_process
from circlet.agent.protocol import Step, Task
from circlet.agent.task_dirs import TaskDirs

StepStatus = Literal["running", "success", "failed", "canceled", "timedout", "skipped"]


class EventSink(Protocol):
    """Where a task's step events and (already masked) output go: the server, or a list in tests."""

    async def step_event(
        self, index: int, name: str, status: str, exit_code: int | None, started_at: str, ended_at: str | None
    ) -> None: ...

    async def step_output(self, index: int, data: bytes) -> None: ...


class TaskStorage(Protocol):
    """The server's storage for a task's storage steps (``TaskClient``, or a fake in tests)."""

    async def find_cache(self, keys: Sequence[str]) -> str | None: ...

    async def record_release(self, marker: dict[str, Any]) -> tuple[int, str]: ...

    async def cache_exists(self, key: str) -> bool: ...

    async def download_cache(self, key: str, target: Path) -> None: ...

    async def upload_cache(self, key: str, source: Path) -> bool: ...

    async def upload_layer(self, source: Path) -> None: ...

    async def workspace_layers(self) -> list[str]: ...

    async def download_layer(self, layer_id: str, target: Path) -> None: ...

    async def upload_artifact(self, destination: str, source: Path) -> None: ...

    async def upload_test_results(self, source: str, file: Path) -> int: ...


@dataclass(frozen=True)
class StepOutcome:
    status: StepStatus
    exit_code: int | None = None
    reason: str | None = None
    """Why the step did not succeed, for the task's completion message (no secret values)."""

    @classmethod
    def of_process(cls, result: ProcessResult, what: str, timeout: str | None = None) -> StepOutcome:
        if result.killed:
            return cls("canceled", None, f"{what} was canceled")
        if result.timed_out:
            return cls("timedout", None, f"{what} timed out: no output for {timeout}")
        if result.exit_code == 0:
            return cls("success", 0)
        return cls("failed", result.exit_code, f"{what} failed with exit code {result.exit_code}")


class StepOutput:
    """One step's output: masked, then passed to the sink."""

    def __init__(self, index: int, sink: EventSink, masking: MaskingStream) -> None:
        self.index = index
        self._sink = sink
        self._masking = masking

    async def write(self, data: bytes) -> None:
        masked = self._masking.feed(data)
        if masked:
            await self._sink.step_output(self.index, masked)

    async def line(self, text: str) -> None:
        await self.write(text.encode() + b"\n")

    async def finish(self) -> None:
        tail = self._masking.finish()
        if tail:
            await self._sink.step_output(self.index, tail)


@dataclass
class StepContext:
    task: Task
    step: Step
    index: int
    dirs: TaskDirs
    working_directory: Path
    environment: Mapping[str, str]
    groups: ProcessGroups
    output: StepOutput
    backend: Backend
    """Where the job's code runs: ``run`` steps go through it; every other step runs on the host, as
    the agent, on the task's files (the same files a container has mounted)."""
    run_nested: Callable[[Step], Awaitable[StepOutcome]] | None = None
    """Runs a step nested in this one (``when``/``unless``), writing to this step's output."""
    storage: TaskStorage | None = None
    """Caches, workspace, artifacts and test results on the server (None: this runner has none)."""

    @property
    def job_user(self) -> JobUser | None:
        """Who the job's host processes run as (None: the agent's own user, or a container's)."""
        return self.dirs.owner

    def give(self, path: Path) -> None:
        """A file the agent wrote for the job becomes the job user's."""
        self.dirs.give(path)

    def as_job(self, argv: list[str]) -> list[str]:
        """``argv`` as the job's own processes run: as its user, with its private /tmp."""
        return self.dirs.command(argv)

    def resolve(self, path: object) -> Path:
        """A step's path argument: ``~`` expanded, relative to the job's working directory."""
        if not path:
            return self.working_directory
        return self.dirs.expand(str(path), self.working_directory)

    async def run(
        self,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        no_output_timeout: float | None = None,
    ) -> ProcessResult:
        return await run_process(
            self.as_job(argv),
            cwd=cwd or self.working_directory,
            env=self.environment if env is None else env,
            groups=self.groups,
            on_output=self.output.write,
            no_output_timeout=no_output_timeout,
        )
