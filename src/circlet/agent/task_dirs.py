"""A task's directories on the runner's host: one root per task (removed when the task ends), who
owns what in it, and the file work the agent does there for the job."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from circlet.agent.isolation import SHARED_TMP, JobUser, agent_python_shared
from circlet.agent.job_tools import HALT_MARKER, TIMINGS_FILE
from circlet.agent.job_tools import install as install_job_tools

T = TypeVar("T")


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

    def create(self, owner: JobUser | None = None, *, confined: bool = False) -> None:
        """With a job user, the user owns them and nobody else may enter them (not another job).
        ``confined``: the agent's own file work for the job stays beneath the root (``within``)."""
        self.owner = owner
        self.within = self.root.resolve() if confined else None
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
    within: Path | None = None
    """Where the agent's file work for a confined job must stay (None: wherever its identity may go)."""

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
