"""Who a job runs as. An agent running as root never runs job code as root: each concurrent task
slot has an unprivileged user of its own (``circlet-job-N``, created on first start, or the users
``--job-user`` names), the task's directory belongs to it, and every step starts in a mount
namespace of its own with a private ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (when util-linux's
``unshare`` and ``setpriv`` work; else ``TMPDIR`` only), without new privileges. At the end of the
job every process of the slot's user is killed (docs/security.md)."""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import functools
import itertools
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from circlet.agent.process import proc_files

DEFAULT_USER_PREFIX = "circlet-job-"
LOCK_DIR = Path("/run/circlet-job-users")
PR_SET_DUMPABLE = 4

SHARED_TMP = (Path("/tmp"), Path("/var/tmp"))
"""Bound to the task's own ``tmp`` in each step's mount namespace."""

# Runs as root in the step's new mount namespace, then becomes the job's user. $1 is the task's
# root, $2 its tmp, $3 the anchor (empty, or where in tmp the root must appear again), the rest the
# step's command. The anchor is bound first, so the paths stay valid once /tmp is covered.
_ENTER = (
    'root="$1"; tmp="$2"; anchor="$3"; shift 3; '
    "mount --make-rprivate / && "
    '{ [ -z "$anchor" ] || mount --bind "$root" "$anchor"; } && '
    'mount --rbind "$tmp" /tmp && mount --rbind "$tmp" /var/tmp && '
    "{ [ ! -d /dev/shm ] || mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev tmpfs /dev/shm; } && "
    'exec "$@"'
)


T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


class IsolationError(Exception):
    """The agent cannot give jobs an identity of their own; the message says why and what to do."""


@dataclass(frozen=True)
class JobUser:
    """The unprivileged identity a task slot's processes run as."""

    name: str
    uid: int
    gid: int
    private_tmp: bool
    """Steps get a mount namespace with their own /tmp (False: ``TMPDIR`` only)."""

    def command(self, argv: Sequence[str], root: Path, tmp: Path, anchor: Path | None) -> list[str]:
        """``argv`` as the job's user, without new privileges, with ``tmp`` as /tmp when possible."""
        drop = [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
            *argv,
        ]
        if not self.private_tmp:
            return drop
        enter = [str(root), str(tmp), "" if anchor is None else str(anchor)]
        return ["unshare", "--mount", "--", "/bin/sh", "-c", _ENTER, "circlet-job", *enter, *drop]

    def give(self, path: Path, *, fixed: Collection[Path] = (), pruned: Collection[Path] = ()) -> None:
        """Make ``path`` (and, for a directory, everything under it) the job user's, except the
        ``fixed`` entries and everything from the ``pruned`` ones down. Never follows a link: the job
        may be changing the tree while this runs (``fwalk`` holds each directory open, and ``chown``
        acts on the entry itself)."""
        keep = {os.fspath(entry) for entry in (*fixed, *pruned)}
        skip = {os.fspath(entry) for entry in pruned}
        try:
            if os.fspath(path) not in keep:
                os.chown(path, self.uid, self.gid, follow_symlinks=False)
            if os.fspath(path) in skip or not stat.S_ISDIR(os.lstat(path).st_mode):
                return
        except FileNotFoundError:
            return
        for top, dirs, files, directory in os.fwalk(path, follow_symlinks=False):
            dirs[:] = [name for name in dirs if os.path.join(top, name) not in skip]
            for name in (*dirs, *files):
                if os.path.join(top, name) in keep:
                    continue
                try:
                    if os.stat(name, dir_fd=directory, follow_symlinks=False).st_uid != self.uid:
                        os.chown(name, self.uid, self.gid, dir_fd=directory, follow_symlinks=False)
                except FileNotFoundError:
                    continue

    def processes(self) -> list[int]:
        """Every process whose real or effective user is this one."""
        found: list[int] = []
        for pid, status in proc_files("status"):
            uids = next((line.split()[1:3] for line in status.splitlines() if line.startswith("Uid:")), [])
            if str(self.uid) in uids:
                found.append(pid)
        return found

    async def files(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a thread whose file system access is the job user's (``setfsuid``,
        ``setfsgid``: per thread): the agent's file work in the job's directories then follows the
        job's links only where the job itself could go, and what it creates is the job's."""
        return await asyncio.to_thread(self._files, function, *args)

    def _files(self, function: Callable[..., T], *args: Any) -> T:
        uid, gid, groups = os.geteuid(), os.getegid(), os.getgroups()
        _set_thread_groups([])  # not root's group 0 either
        _libc.setfsgid(self.gid)
        _libc.setfsuid(self.uid)
        try:
            if _libc.setfsuid(-1) != self.uid or _libc.setfsgid(-1) != self.gid:
                raise IsolationError("could not take the job user's file system identity")
            return function(*args)
        finally:
            _libc.setfsuid(uid)
            _libc.setfsgid(gid)
            _set_thread_groups(groups)

    async def kill_all(self, grace: float = 1.0) -> None:
        """End every process of the user (a daemon that left the step's process group too)."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            pids = self.processes()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except (ProcessLookupError, PermissionError):
                    continue
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while loop.time() < deadline and self.processes():
                await asyncio.sleep(0.05)


SETGROUPS = {"x86_64": 116, "aarch64": 159, "riscv64": 159, "ppc64le": 81, "s390x": 206}
"""The raw system call, which (unlike libc's ``setgroups``) changes the calling thread only."""


def _set_thread_groups(groups: Sequence[int]) -> None:
    number = SETGROUPS.get(os.uname().machine)
    if number is None:
        return
    array = (ctypes.c_uint * max(1, len(groups)))(*groups)
    if _libc.syscall(number, len(groups), array) != 0:
        raise IsolationError(f"could not set the thread's groups: {os.strerror(ctypes.get_errno())}")


def is_root() -> bool:
    return os.geteuid() == 0


def job_users(names: Sequence[str], slots: int) -> list[JobUser]:
    """One user per task slot, each held (a lock in ``LOCK_DIR``) for this agent's lifetime: the
    ``names`` given (as many as slots), else the first free ``circlet-job-N``, created when missing.
    A user is never shared between slots, nor with another agent on the host: two jobs of one user
    could read each other's files and environment and signal each other, and the end of one job
    kills every process of its user."""
    if names and len(names) < slots:
        raise IsolationError(
            f"--job-user names {len(names)} user(s) for {slots} concurrent tasks: each concurrent task needs a"
            " user of its own (give as many comma-separated names as --max-tasks)"
        )
    if len(set(names)) != len(names):
        raise IsolationError("--job-user names one user twice: each concurrent task needs a user of its own")
    if shutil.which("setpriv") is None:
        raise IsolationError("the agent runs as root and needs util-linux's setpriv to run jobs as another user")
    private_tmp = _namespaces_work()
    users: list[JobUser] = []
    held_before = len(_held)
    candidates = iter(names[:slots]) if names else (f"{DEFAULT_USER_PREFIX}{n}" for n in itertools.count())
    try:
        for name in candidates:
            if len(users) == slots:
                break
            if not _hold(name):
                if names:
                    raise IsolationError(f"job user {name} is in use by another runner on this host")
                continue
            entry = _user(name, create=not names)
            if entry.pw_uid == 0 or entry.pw_gid == 0:
                raise IsolationError(f"job user {name} is root (uid or gid 0); jobs must not run as root")
            if entry.pw_uid == os.getuid():
                raise IsolationError(f"job user {name} is the agent's own user; jobs must run as another user")
            users.append(JobUser(name, entry.pw_uid, entry.pw_gid, private_tmp))
    except IsolationError:
        # A refused set of users holds none of them: another agent (or a corrected retry) may take them.
        while len(_held) > held_before:
            os.close(_held.pop())
        raise
    return users


_held: list[int] = []
"""Lock files of the job users this agent holds (open until it exits)."""


def _hold(name: str) -> bool:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    descriptor = os.open(LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    _held.append(descriptor)
    return True


def _user(name: str, *, create: bool) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if not create:
            raise IsolationError(f"job user {name} does not exist") from None
    useradd = shutil.which("useradd") or shutil.which("adduser")
    if useradd is None:
        raise IsolationError(
            f"the job user {name} does not exist and there is no useradd to create it; create it, or name an"
            " existing unprivileged user with --job-user (CIRCLET_JOB_USER)"
        )
    if Path(useradd).name == "useradd":
        argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        argv += ["--shell", "/usr/sbin/nologin", name]
    else:  # busybox
        argv = [useradd, "-S", "-D", "-H", "-h", "/nonexistent", "-s", "/sbin/nologin", name]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise IsolationError(f"could not create the job user {name}: {result.stderr.strip()[-300:]}")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise IsolationError(f"{useradd} did not create the job user {name}") from None


def _namespaces_work() -> bool:
    """Whether a step can get a mount namespace with a private /tmp here (not in every container)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--", "/bin/sh", "-c", "mount --make-rprivate / && mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def reachable_by_all(path: Path) -> Path | None:
    """The first directory from ``/`` down to ``path`` that other users may not pass through."""
    for directory in reversed([path.resolve(), *path.resolve().parents]):
        if not os.stat(directory).st_mode & stat.S_IXOTH:
            return directory
    return None


@functools.cache
def agent_python_shared() -> bool:
    """Whether other users can run the agent's interpreter with circlet (not when it lives in
    root's home, as a pyenv or a venv there does)."""
    import circlet

    needed = [Path(sys.executable).resolve().parent, Path(os.__file__).resolve().parent]
    needed.append(Path(circlet.__file__).resolve().parent)
    return all(reachable_by_all(path) is None for path in needed)


def forbid_inspection() -> None:
    """Make this process undumpable: its ``/proc/<pid>/environ`` and memory (the runner token) are
    then root's, out of reach even of a job running as the agent's own user (``--trust-jobs``)."""
    try:
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except AttributeError:
        return
