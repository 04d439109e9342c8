"""Child processes of a task: each step's command runs in its own process group (a new session), so
that a cancel, a timeout or the end of the job kills everything the step started."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

READ_SIZE = 64 * 1024
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    """The exit status; 128 + N when a signal N ended it; None when it never started."""
    timed_out: bool = False
    killed: bool = False
    """Ended by ``ProcessGroups.kill_all`` (cancel, shutdown or end of job)."""


SignalRemote = Callable[[signal.Signals], Awaitable[None]]
"""Signals what a host process runs elsewhere (a step inside a container, behind ``exec``)."""


class ProcessGroups:
    """The live process groups of one task. After ``kill_all`` no new process may start."""

    def __init__(self, kill_grace: float = 5.0) -> None:
        self.kill_grace = kill_grace
        self.closed = False
        self._live: set[int] = set()
        self._remote: dict[int, SignalRemote] = {}

    def add(self, pgid: int, signal_remote: SignalRemote | None = None) -> None:
        self._live.add(pgid)
        if signal_remote is not None:
            self._remote[pgid] = signal_remote

    def discard(self, pgid: int) -> None:
        self._live.discard(pgid)
        self._remote.pop(pgid, None)

    def forget_remote(self, pgid: int) -> None:
        """The remote side has ended with its host process: nothing there to signal any more."""
        self._remote.pop(pgid, None)

    async def kill(self, pgid: int) -> None:
        """SIGTERM the group, then SIGKILL whatever is left of it after ``kill_grace`` seconds.
        A group with a remote side gets the signals there first; its host process (the ``exec``
        client) is then left to end with it, so the step's last output still arrives."""
        remote = self._remote.get(pgid)
        if remote is not None:
            await remote(signal.SIGTERM)
        elif not _signal_group(pgid, signal.SIGTERM):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.kill_grace
        while loop.time() < deadline:
            if not group_alive(pgid):
                return
            await asyncio.sleep(0.05)
        if remote is not None:
            await remote(signal.SIGKILL)
        _signal_group(pgid, signal.SIGKILL)

    async def kill_all(self) -> None:
        self.closed = True
        groups = list(self._live)
        await asyncio.gather(*(self.kill(pgid) for pgid in groups))


def _signal_group(pgid: int, signum: signal.Signals) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def proc_files(name: str) -> Iterator[tuple[int, str]]:
    """(pid, text of ``/proc/<pid>/<name>``) of every process still there when it is read."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / name).read_text()
            except OSError:
                continue


def group_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies waiting for their parent do not count)."""
    if not PROC.is_dir():
        return _signal_group(pgid, signal.Signals(0))
    for _, stat in proc_files("stat"):
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    groups: ProcessGroups,
    on_output: Callable[[bytes], Awaitable[None]],
    no_output_timeout: float | None = None,
    signal_remote: SignalRemote | None = None,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run ``argv`` in a new session with stdout and stderr combined, passing output to
    ``on_output`` as it comes, until the output ends (every process holding it closed it) and the
    process has exited. With no output for ``no_output_timeout`` seconds, the group is killed."""
    if groups.closed:
        return ProcessResult(None, killed=True)
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    groups.add(process.pid, signal_remote)
    if stdin is not None:
        assert process.stdin is not None
        process.stdin.write(stdin)
        process.stdin.close()  # asyncio sends what is buffered before it closes
    if groups.closed:  # killed while starting
        await groups.kill(process.pid)
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    timed_out = False
    try:
        last_output = loop.time()
        while True:
            wait = None if no_output_timeout is None else last_output + no_output_timeout - loop.time()
            try:
                chunk = await asyncio.wait_for(process.stdout.read(READ_SIZE), wait)
            except TimeoutError:
                timed_out = True
                await groups.kill(process.pid)
                break
            if not chunk:
                break
            last_output = loop.time()
            await on_output(chunk)
        returncode = await process.wait()
        if not timed_out and not groups.closed:
            groups.forget_remote(process.pid)
    except BaseException:
        await groups.kill(process.pid)
        raise
    if timed_out or groups.closed:
        groups.discard(process.pid)
    exit_code = returncode if returncode >= 0 else 128 - returncode
    return ProcessResult(exit_code, timed_out=timed_out, killed=groups.closed and not timed_out)
