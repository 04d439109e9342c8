"""Job code on the runner's host: each step a process group of its own, as the slot's job user when
the agent is root (docs/security.md), else as the agent's user."""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from circlet.agent.backends.base import Note, Shell, StepCommand
from circlet.agent.isolation import JobUser, reachable_by_all
from circlet.agent.process import ProcessGroups, ProcessResult, run_process
from circlet.agent.task_dirs import TaskDirs

HOST_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "SHELL", "TERM")
"""The only variables of the agent's own environment a job sees (never the runner token); ``PATH``
without the agent's virtual environment. ``USER``, ``LOGNAME`` and ``TMPDIR`` are the job's own."""
FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HostBackend:
    def __init__(
        self, dirs: TaskDirs, groups: ProcessGroups, job_user: JobUser | None, *, warning: str | None = None
    ) -> None:
        self._dirs = dirs
        self._groups = groups
        self._job_user = job_user
        self._warning = warning

    @property
    def job_user(self) -> JobUser | None:
        return self._job_user

    @property
    def confined(self) -> bool:
        return False

    @property
    def secrets(self) -> Sequence[str]:
        return ()

    async def setup(self, note: Note) -> str | None:
        if self._warning is not None:
            await note(self._warning)
        return None

    def environment(self, task_environment: Mapping[str, str]) -> dict[str, str]:
        """The host's basics, then the task's variables."""
        environment = {name: os.environ[name] for name in HOST_VARIABLES if name in os.environ}
        environment.update({name: value for name, value in os.environ.items() if name.startswith("LC_")})
        environment["PATH"] = host_path(environment.get("PATH", ""), other_user=self._job_user is not None)
        user = self._job_user.name if self._job_user is not None else getpass.getuser()
        private_tmp = self._job_user is not None and self._job_user.private_tmp
        environment.update({"USER": user, "LOGNAME": user, "TMPDIR": "/tmp" if private_tmp else str(self._dirs.tmp)})
        environment.update(task_environment)
        return environment

    def default_shell(self) -> Shell:
        return default_shell()

    async def run(self, command: StepCommand) -> ProcessResult:
        return await run_process(
            self._dirs.command(list(command.argv)),
            cwd=command.cwd,
            env=command.environment,
            groups=self._groups,
            on_output=command.output,
            no_output_timeout=command.no_output_timeout,
        )

    async def agent_wrote(self) -> None:
        if self._job_user is not None:
            await asyncio.to_thread(self._dirs.give, self._dirs.root)

    async def stop(self) -> None:
        if self._job_user is not None:  # what left its process group: a daemon, a setsid
            await self._job_user.kill_all()

    async def destroy(self) -> None:
        return None


@functools.cache
def default_shell() -> Shell:
    """CircleCI's default: ``/bin/bash -eo pipefail``, else ``/bin/sh -eo pipefail`` (``-e`` alone
    where that sh has no pipefail)."""
    bash = "/bin/bash" if shutil.which("/bin/bash") else shutil.which("bash")
    if bash:
        return Shell((bash, "-eo", "pipefail"), False)
    probe = subprocess.run(["/bin/sh", "-o", "pipefail", "-c", ":"], capture_output=True, check=False)
    return Shell(("/bin/sh", "-eo", "pipefail") if probe.returncode == 0 else ("/bin/sh", "-e"), True)


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
