"""Where a task's job code runs, behind one interface (Woodpecker's ``Backend`` is the model). The
executor sets the backend up once, runs each ``run`` step through it, tells it after each step the
agent itself ran (checkout, caches, workspaces: files the agent wrote for the job), ends what the job
left running and destroys what setup made, whatever happened. Two backends exist: the host (as a job
user of its own when the agent is root, docs/security.md) and containers (a docker job's images, or a
host job's one image through a rootless engine). Which one a task gets is ``choice.py``'s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from circlet.agent.isolation import JobUser
from circlet.agent.process import ProcessResult

Note = Callable[[str], Awaitable[None]]
"""A line for the top of the first step's output (what setup did, or a warning)."""
Output = Callable[[bytes], Awaitable[None]]
"""Where a step's output goes (masked on its way to the server)."""


@dataclass(frozen=True)
class Shell:
    """The default shell of ``run`` steps, and whether a script must source ``$BASH_ENV`` itself
    (bash does it for a non-interactive shell; sh does not)."""

    argv: tuple[str, ...]
    sources_bash_env: bool


@dataclass(frozen=True)
class StepCommand:
    """One ``run`` step's process, as the executor and the step hand it to the backend."""

    index: int
    """The step's place in the task (names the step's own files in the task's ``data``)."""
    argv: Sequence[str]
    cwd: Path
    environment: Mapping[str, str]
    output: Output
    no_output_timeout: float | None = None


class Backend(Protocol):
    """Runs a task's job code. ``tests/agent/test_backends.py`` holds the real backends and the test
    double to this interface, signature by signature."""

    @property
    def job_user(self) -> JobUser | None:
        """Who owns the task's files and runs its host processes (None: the agent's own user)."""
        ...

    @property
    def confined(self) -> bool:
        """The job reaches nothing of this host but its task directory (a container): the steps the
        agent runs itself must then not read or write beyond it either, whatever links the job
        planted (the agent may read what the job may not)."""
        ...

    @property
    def secrets(self) -> Sequence[str]:
        """Values setup knows that no output may show (registry passwords)."""
        ...

    async def setup(self, note: Note) -> str | None:
        """Make the job's environment ready (start containers); None, or why the job cannot run."""
        ...

    def environment(self, task_environment: Mapping[str, str]) -> dict[str, str]:
        """The steps' environment: what the backend gives, then the task's variables (the executor adds
        what only the runner knows)."""
        ...

    def default_shell(self) -> Shell:
        """The shell of a ``run`` step that names none (known once setup is done)."""
        ...

    async def run(self, command: StepCommand) -> ProcessResult:
        """Start the step, stream its output, wait for its end (or its kill: cancel, timeout)."""
        ...

    async def agent_wrote(self) -> None:
        """The agent ran a step itself, as its own user: what it wrote must become the job's."""
        ...

    async def stop(self) -> None:
        """End whatever of the job still runs (after its steps' process groups were killed)."""
        ...

    async def destroy(self) -> None:
        """Remove what setup made."""
        ...
