"""What a step handler gets: the task, its directories and environment, a masked output stream and
the task's process groups; and what it gives back."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from circlet.agent.containers import TaskContainers
from circlet.agent.isolation import SHARED_TMP, JobUser, agent_python_shared
from circlet.agent.job_tools import HALT_MARKER, TIMINGS_FILE
from circlet.agent.job_tools import install as install_job_tools
from circlet.agent.masking import MaskingStream
from circlet.agent.process import ProcessGroups, ProcessResult, run_process
from circlet.agent.protocol import Step, Task

T = TypeVar("T")
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
class TaskDirs:
    """The per-task directories, all under one root removed when the task ends."""

    root: Path
    home: Path = field(init=False)
    data: Path = field(init=False)
    bin: Path = field(init=False)
    """First on the job's ``PATH``: ``circleci``, ``circleci-agent`` (and ``ssh`` after ``add_ssh_keys``)."""
    bash_env: Path = field(init=False)
    halt_marker: Path = field(init=False)
    timings: Path = field(init=False)
    tmp: Path = field(init=False)
    """The job's ``TMPDIR`` (and its ``/tmp`` where steps get a mount namespace)."""
    source: Path = field(init=False)
    """Beside the root, the job's copy of a local repository (``checkout`` as a job user)."""

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.data = self.root / "data"
        self.bin = self.root / "bin"
        self.bash_env = self.data / "bash_env"
        self.halt_marker = self.data / HALT_MARKER
        self.timings = self.data / TIMINGS_FILE
        self.tmp = self.root / "tmp"
        self.source = self.root.with_name(self.root.name + ".source")

    def create(self, owner: JobUser | None = None) -> None:
        """With a job user, the user owns them and nobody else may enter them (not another job)."""
        self.owner = owner
        mode = 0o777 if owner is None else 0o700
        self.root.mkdir(mode=mode, parents=True, exist_ok=True)
        for directory in (self.home, self.data, self.tmp):
            directory.mkdir(mode=mode, parents=True, exist_ok=True)
        self.bash_env.touch()
        install_job_tools(self.bin, portable=owner is not None and not agent_python_shared())
        if owner is None:
            return
        self.give(self.root)
        # The root stays root's (its group the job's, 0710): the job cannot replace ``data``, ``home``,
        # ``bin`` or ``tmp`` by links between two things the agent does there as root.
        os.chown(self.root, 0, owner.gid)
        self.root.chmod(0o710)
        if owner.private_tmp:
            # The job's /tmp is ``tmp``: root's and sticky, so the job cannot move what the agent
            # puts there, the place where its own task directory appears again when the root is
            # itself under /tmp (the mount over /tmp would hide it otherwise).
            os.chown(self.tmp, 0, 0)
            self.tmp.chmod(0o1777)
            anchor = self.anchor()
            if anchor is not None:
                path = self.tmp
                for part in anchor.relative_to(self.tmp).parts:
                    path = path / part
                    path.mkdir()
                    path.chmod(0o711)

    owner: JobUser | None = None

    def anchor(self) -> Path | None:
        """Where, inside ``tmp``, the task's root is mounted again for a job whose /tmp is ``tmp``."""
        resolved = self.root.resolve()
        for shared in SHARED_TMP:
            if resolved.is_relative_to(shared):
                return self.tmp / resolved.relative_to(shared)
        return None

    def give(self, path: Path) -> None:
        """What the agent wrote for the job becomes the job user's (never ``tmp`` and the anchor)."""
        if self.owner is None:
            return
        anchor = self.anchor() if self.owner.private_tmp else None
        fixed = (self.root, self.tmp) if self.owner.private_tmp else (self.root,)
        pruned = () if anchor is None else (self.tmp / anchor.relative_to(self.tmp).parts[0],)
        self.owner.give(path, fixed=fixed, pruned=pruned)

    async def job_files(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` off the event loop: file work for the job, with the job user's file
        system permissions (a link the job planted leads only where the job could go itself)."""
        if self.owner is None:
            return await asyncio.to_thread(function, *args)
        return await self.owner.files(function, *args)

    def make_dir(self, path: Path) -> None:
        """``path`` and its missing parents, made as the job's user (the agent would follow a link
        the job planted, and the job could not write in what the agent made)."""
        if self.owner is None or path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            return
        made = subprocess.run(self.command(["mkdir", "-p", "--", str(path)]), capture_output=True, check=False)
        if made.returncode != 0:
            problem = made.stderr.decode(errors="replace").strip().splitlines()
            raise OSError(errno.EACCES, problem[-1] if problem else f"could not make {path}")

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as the job's own processes run: as its user, with its private /tmp."""
        if self.owner is None:
            return argv
        return self.owner.command(argv, self.root, self.tmp, self.anchor())

    def expand(self, path: str, base: Path) -> Path:
        """``~`` is the task's home; a relative path is relative to ``base``; /tmp and /var/tmp are
        the job's own when it has a private one."""
        if path == "~" or path.startswith("~/"):
            return self.home / path[2:]
        if self.owner is not None and self.owner.private_tmp and path.startswith("/"):
            for shared in SHARED_TMP:
                if Path(path).is_relative_to(shared):
                    return self.tmp / Path(path).relative_to(shared)
        return base / path


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
    run_nested: Callable[[Step], Awaitable[StepOutcome]] | None = None
    """Runs a step nested in this one (``when``/``unless``), writing to this step's output."""
    storage: TaskStorage | None = None
    """Caches, workspace, artifacts and test results on the server (None: this runner has none)."""
    containers: TaskContainers | None = None
    """The job's containers, when it is a docker job run in real ones: ``run`` steps go into the
    primary; every other step runs on the host, on the same bind-mounted files."""
    job_user: JobUser | None = None
    """Who the job's host processes run as (None: the agent's own user, ``--trust-jobs``)."""

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
