"""Job code in containers, through the engine's CLI (agent/containers/): a docker job's images (the
primary runs the steps, the others are its services), or a host job's one image when the agent may
not run it on the host and the engine is rootless (docs/security.md). Only the task directory (and,
read-only, the agent's Python for the ``circleci`` helpers) is mounted. Steps other than ``run`` run
on the host, as the agent, on the same bind-mounted files."""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence

from circlet.agent.backends.base import Note, Shell, StepCommand
from circlet.agent.containers import TaskContainers, environment_script
from circlet.agent.isolation import JobUser
from circlet.agent.process import ProcessGroups, ProcessResult, run_process
from circlet.agent.task_dirs import TaskDirs


class ContainerBackend:
    def __init__(
        self, containers: TaskContainers, dirs: TaskDirs, groups: ProcessGroups, *, notice: str | None = None
    ) -> None:
        self.containers = containers
        self._dirs = dirs
        self._groups = groups
        self._notice = notice

    @property
    def job_user(self) -> JobUser | None:
        return None  # the engine's own arrangement of users (the image's, or the job's ``user``)

    @property
    def confined(self) -> bool:
        return True

    @property
    def secrets(self) -> Sequence[str]:
        return [spec.auth[1] for spec in self.containers.specs if spec.auth is not None]

    async def setup(self, note: Note) -> str | None:
        if self._notice is not None:
            await note(self._notice)
        return await self.containers.start(note)

    def environment(self, task_environment: Mapping[str, str]) -> dict[str, str]:
        """In the primary: the image's own environment (the engine gives it), then the primary's
        ``environment`` and the task's variables. Nothing of the agent's host environment: its
        ``PATH`` is the image's."""
        environment = dict(self.containers.specs[0].environment)
        environment.update(task_environment)
        environment["PATH"] = environment.get("PATH") or self.containers.shell.path
        return environment

    def default_shell(self) -> Shell:
        return Shell(self.containers.shell.shell, self.containers.shell.sources_bash_env)

    async def run(self, command: StepCommand) -> ProcessResult:
        """The step in the primary through the engine's ``exec``. A kill (cancel, timeout, end of the
        job) signals the step's process group inside the container, not only the ``exec`` client."""
        containers = self.containers
        chowned = await containers.give_files_to_user()
        if chowned is not None and not chowned.ok:
            warning = f"circlet runner: warning: could not give the job's files to user {containers.user}: "
            await command.output(f"{warning}{chowned.last_line()}\n".encode())
        pid_file = self._dirs.data / f"step-{command.index}.pid"
        pid_file.unlink(missing_ok=True)

        async def signal_step(signum: signal.Signals) -> None:
            await containers.signal_step(pid_file, signum)

        return await run_process(
            containers.exec_argv(pid_file, command.cwd, command.argv),
            cwd=self._dirs.root,
            env=containers.engine.environment,
            groups=self._groups,
            on_output=command.output,
            no_output_timeout=command.no_output_timeout,
            signal_remote=signal_step,
            stdin=environment_script(command.environment),
        )

    async def agent_wrote(self) -> None:
        """The agent wrote as itself: the primary's ``user`` gets the files back before the next step."""
        self.containers.ownership_stale = True

    async def stop(self) -> None:
        return None  # what still runs in the containers ends with them (``destroy``)

    async def destroy(self) -> None:
        await self.containers.remove()
