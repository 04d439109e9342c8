"""tar archives of the storage steps, made and unpacked off the event loop. Member names are
always relative; unpacking refuses absolute and ``..`` names outright and keeps symbolic links as
they are (a cached venv's ``bin/python`` points at an absolute interpreter), but never writes through
one: a member whose directory resolves outside the target is refused, and a link standing where a
member goes is replaced, not followed (see ``_KeepLinks``).

Archives are made uncompressed: gzip, even at level 1, ran at ~40 MB/s on one core and made
``save_cache`` of 200 MB take 14-23x as long as ``tar -cf`` plus ``cp`` (docs/performance.md, issue 6);
a plain tar is written and read as fast as the disk allows. Unpacking detects the compression, so
the tar.gz archives stored before this change still restore.

The file work runs on the thread the caller gives (``TaskDirs.job_files``: with a job user, that
user's file system identity), so an archive holds only what the job may read and unpacks only where
the job may write; the archive file itself is opened by the caller, as the agent, where the job
cannot reach it."""

from __future__ import annotations

import asyncio
import errno
import glob
import io
import os
import stat
import tarfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

FileThread = Callable[..., Awaitable[Any]]
"""Runs ``function(*args)`` off the event loop with some file system identity (``asyncio.to_thread``:
the agent's own)."""

GLOB_CHARS = frozenset("*?[")


class ArchiveError(Exception):
    """A path or an archive the step refuses; the message is for the step's output."""


def expand(base: Path, pattern: str) -> list[Path]:
    """``pattern`` relative to ``base`` (glob patterns allowed); refuses absolute names and ``..``."""
    if not pattern or pattern.startswith("/") or ".." in Path(pattern).parts:
        raise ArchiveError(f"{pattern!r}: paths must be relative to the root, without '..'")
    if GLOB_CHARS & set(pattern):
        return sorted(Path(found) for found in glob.glob(str(base / pattern), recursive=True))
    path = base / pattern
    return [path] if readable_entry(path) else []


_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG)


def readable_entry(path: Path) -> bool:
    """Whether ``path`` names an entry the calling thread may see (a link counts, dangling or not);
    one it may not reach is as absent."""
    try:
        os.lstat(path)
    except OSError as exc:
        if exc.errno in _NOT_THERE:
            return False
        raise
    return True


def _kernel_copy(source: int, offset: int, target: int, size: int) -> None:
    """``size`` bytes of ``source`` from ``offset`` to ``target``'s current position, copied by the
    kernel (no trip through Python's memory: a third of the time of tarfile's read/write loop)."""
    while size > 0:
        sent = os.sendfile(target, source, offset, min(size, 1 << 30))
        if sent == 0:
            raise OSError("unexpected end of data")
        offset += sent
        size -= sent


class _Tar(tarfile.TarFile):
    """tarfile, with the contents of regular files copied by ``sendfile`` when both sides are plain
    files (archives this module makes, and uncompressed ones it unpacks); the same bytes either way,
    and tarfile's own loop for anything else (compressed archives, sparse members, no ``sendfile``)."""

    def addfile(self, tarinfo: tarfile.TarInfo, fileobj: Any = None) -> None:
        if fileobj is None or not _plain(self.fileobj) or not _plain(fileobj) or not hasattr(os, "sendfile"):
            super().addfile(tarinfo, fileobj)
            return
        super().addfile(tarinfo)  # the header only
        _kernel_copy(fileobj.fileno(), fileobj.tell(), _fd(self.fileobj), tarinfo.size)
        blocks, remainder = divmod(tarinfo.size, tarfile.BLOCKSIZE)
        if remainder:
            self.fileobj.write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))
            blocks += 1
        self.offset += blocks * tarfile.BLOCKSIZE

    def chown(self, tarinfo: tarfile.TarInfo, targetpath: Any, numeric_owner: bool) -> None:
        """Never: what a job unpacks belongs to whoever unpacks it (``tar_filter`` keeps owners)."""

    def makefile(self, tarinfo: tarfile.TarInfo, targetpath: Any) -> None:
        if tarinfo.sparse is not None or not _plain(self.fileobj) or not hasattr(os, "sendfile"):
            super().makefile(tarinfo, targetpath)
            return
        with open(targetpath, "wb", buffering=0) as target:
            _kernel_copy(_fd(self.fileobj), tarinfo.offset_data, target.fileno(), tarinfo.size)


def _fd(fileobj: Any) -> int:
    return int(fileobj.fileno())


def _plain(fileobj: object) -> bool:
    """A file of the file system read or written as is (not a gzip stream, not in memory)."""
    return type(fileobj) in (io.FileIO, io.BufferedReader)


def _absolute(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A member named by its absolute path, as ``tar -P`` names it (tarfile strips the ``/``)."""
    info.name = "/" + info.name
    if info.islnk():
        info.linkname = "/" + info.linkname
    return info


MOVABLE = "circlet.movable"
"""A cache's global PAX header: the task directory it was saved from. Absolute paths under it (``~/..``
is there) follow the task directory of the job that restores the cache, as ``/home/circleci/..`` stays
the same path from one CircleCI job to the next."""


@dataclass
class Archived:
    count: int = 0
    """The given paths archived (each with what it holds that could be read)."""
    unreadable: list[str] = field(default_factory=list)
    """Paths left out because the thread's identity may not read them."""


def _refused(exc: OSError) -> bool:
    return exc.errno in (errno.EACCES, errno.EPERM)


def beneath(descriptor: int, root: Path | None, shown: object) -> None:
    """Refuse (``PermissionError``) an open file that is not beneath ``root`` (None: anywhere): the
    path it was opened by may have led out through a link a job planted; the open file says where it
    really is."""
    if root is None:
        return
    real = os.readlink(f"/proc/self/fd/{descriptor}")
    if not Path(real).is_relative_to(root):
        raise PermissionError(errno.EACCES, f"{shown} is outside the task directory", str(shown))


def _add(
    tar: tarfile.TarFile, path: str, arcname: str, absolute: bool, archived: Archived, within: Path | None = None
) -> bool:
    """``path`` and what it holds, as ``TarFile.add`` adds them (no link followed, sorted), except that
    an entry the thread may not read is left out and listed instead of failing the archive. A regular
    file's header comes from the open file, so its bytes and its header are of the same file."""
    if tar.name is not None and os.path.abspath(path) == tar.name:
        return False  # the archive itself, when a saved directory holds it
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as file:
                beneath(file.fileno(), within, path)
                info = tar.gettarinfo(arcname=arcname, fileobj=file)
                if info.isreg():
                    tar.addfile(_absolute(info) if absolute else info, file)
                else:  # a hard link to a file already archived
                    tar.addfile(_absolute(info) if absolute else info)
            return True
        info = tar.gettarinfo(path, arcname)
        names = sorted(os.listdir(path)) if info is not None and info.isdir() else []
    except OSError as exc:
        if not _refused(exc):
            raise
        archived.unreadable.append(path)
        return False
    if info is None:  # a socket: tar leaves it out too
        return False
    tar.addfile(_absolute(info) if absolute else info)
    for name in names:
        _add(tar, os.path.join(path, name), f"{arcname}/{name}", absolute, archived, within)
    return True


def _create(
    file: io.FileIO, base: Path, members: Sequence[Path], movable: Path | None, within: Path | None
) -> Archived:
    archived = Archived()
    outside = [member for member in members if not member.is_relative_to(base)]
    headers = {MOVABLE: str(movable)} if outside and movable is not None else {}
    with _Tar.open(fileobj=file, mode="w", pax_headers=headers) as tar:
        for member in members:
            if member in outside:
                added = _add(tar, str(member), str(member), True, archived, within)
            else:
                added = _add(tar, str(member), str(member.relative_to(base)), False, archived, within)
            archived.count += added
    return archived


async def create(
    archive: Path,
    base: Path,
    members: Sequence[Path],
    *,
    movable: Path | None = None,
    thread: FileThread = asyncio.to_thread,
    within: Path | None = None,
) -> Archived:
    """A tar at ``archive`` of ``members``: those under ``base`` named relative to it, any other
    (``save_cache`` of an absolute path) by its absolute path; ``movable`` is recorded as
    ``MOVABLE``. ``archive`` is opened here; the members are read on ``thread``; with ``within``, a
    file that is not beneath it is left out as unreadable."""
    # Unbuffered: headers go straight to the file, so the kernel copies that follow land after them.
    with open(archive, "wb", buffering=0) as file:
        archived: Archived = await thread(_create, file, base, members, movable, within)
    return archived


class _KeepLinks:
    """The extraction filter: tarfile's ``data`` rules (no special files, no setuid or group/other
    write bits, hard links only to files inside the target), except that a symbolic
    link keeps its target, absolute or leading outside. ``data`` refuses such links, and with them
    every cached Python venv; but a link is only dangerous when something is written through it,
    and this filter prevents that instead, for links of the same archive and of earlier ones
    (another layer, another cache) alike:

    - a member whose directory resolves (links followed, as they are on disk now) outside the target
      is refused, so ``dir -> /etc`` then ``dir/passwd`` writes nothing;
    - a link (or file) already where a member goes is removed first, so the member replaces it (as
      GNU tar does) instead of writing into what it points at.

    Each member is checked just before it is written, against the disk as the previous members
    left it. Hard links are checked by ``data`` against their resolved target, so a hard link to a
    link leading outside is refused too."""

    def __init__(self, target: Path, within: str | None = None) -> None:
        self.root = os.path.realpath(target)
        self.within = os.path.join(self.root, within) if within else self.root
        """Where members may go: the target, or one path of it (an absolute path a cache saved)."""

    def __call__(self, member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
        place = os.path.join(self.root, member.name)
        directory = os.path.realpath(os.path.dirname(place))
        inside = os.path.commonpath([directory, self.within]) == self.within
        if not inside and not (place == self.within and directory == self.root):
            raise ArchiveError(f"the archive writes {member.name[:200]!r} through a link leading outside the target")
        if os.path.islink(place) or (os.path.lexists(place) and not os.path.isdir(place)):
            os.unlink(place)
        if not member.issym():
            return tarfile.data_filter(member, self.root)
        return tarfile.tar_filter(member, self.root)  # name and mode rules, not the link's target


def _outside_root(name: str) -> bool:
    return ".." in PurePosixPath(name).parts


def _unpack(tar: tarfile.TarFile, members: list[tarfile.TarInfo], keep_links: _KeepLinks) -> None:
    for member in members:
        # One at a time, not ``extractall``: that sets directories' times at the end, through
        # whatever stands at their path by then.
        tar.extract(member, keep_links.root, set_attrs=not member.isdir(), filter=keep_links)


def _absolute_roots(members: list[tarfile.TarInfo]) -> dict[str, list[tarfile.TarInfo]]:
    """The absolute paths a cache saved, each with its members renamed relative to its parent."""
    roots: dict[str, list[tarfile.TarInfo]] = {}
    for member in members:
        path = PurePosixPath(member.name)
        root = next((r for r in roots if path == PurePosixPath(r) or PurePosixPath(r) in path.parents), None)
        if root is None:
            root = member.name
            roots[root] = []
        renamed = member.replace(name=str(path.relative_to(PurePosixPath(root).parent)), deep=False)
        if member.islnk():
            renamed.linkname = os.path.relpath(member.linkname, PurePosixPath(root).parent)
        roots[root].append(renamed)
    return roots


def _saved_path(root: str, saved_from: str | None, movable: Path) -> Path:
    if saved_from and PurePosixPath(root).is_relative_to(saved_from):
        return movable / PurePosixPath(root).relative_to(saved_from)
    return Path(root)


def _extract(file: io.BufferedReader, target: Path, movable: Path | None, within: Path | None) -> int:
    try:
        _writable_within(next(p for p in (target, *target.parents) if p.exists()), within)  # before mkdir
        target.mkdir(parents=True, exist_ok=True)
        _writable_within(target, within)
        with _Tar.open(fileobj=file, mode="r:*") as tar:  # a tar, or a tar.gz made before issue 6
            members = tar.getmembers()
            for member in members:
                if _outside_root(member.name) or (member.name.startswith("/") and movable is None):
                    raise ArchiveError(f"the archive has a member outside its root: {member.name[:200]!r}")
            _unpack(tar, [m for m in members if not m.name.startswith("/")], _KeepLinks(target))
            for root, renamed in _absolute_roots([m for m in members if m.name.startswith("/")]).items():
                assert movable is not None
                path = _saved_path(root, tar.pax_headers.get(MOVABLE), movable)
                _writable_within(next(p for p in (path.parent, *path.parents) if p.exists()), within)
                path.parent.mkdir(parents=True, exist_ok=True)
                _writable_within(path.parent, within)
                _unpack(tar, renamed, _KeepLinks(path.parent, within=path.name))
    except OSError as exc:
        if _refused(exc):
            where = exc.filename if exc.filename is not None else target
            raise ArchiveError(f"could not write {where}: permission denied (the job may not write there)") from None
        raise ArchiveError(f"the archive could not be unpacked: {exc}") from None
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise ArchiveError(f"the archive could not be unpacked: {exc}") from None
    return len(members)


def _writable_within(directory: Path, within: Path | None) -> None:
    """Refuse to unpack into a directory that is not beneath ``within`` (a link the job planted may
    lead there); tarfile's filters keep every member beneath the directory itself."""
    if within is None:
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        beneath(descriptor, within, directory)
    finally:
        os.close(descriptor)


async def extract(
    archive: Path,
    target: Path,
    *,
    movable: Path | None = None,
    thread: FileThread = asyncio.to_thread,
    within: Path | None = None,
) -> int:
    """Unpack ``archive`` into ``target``. With ``movable`` (caches: the task's directory), members
    named by an absolute path go back to that path (under ``movable`` when they were saved from
    under the saving task's directory), each saved path unpacked as a target of its own. ``archive``
    is opened here; everything is written on ``thread``, and with ``within`` only beneath it."""
    with open(archive, "rb") as file:
        count: int = await thread(_extract, file, target, movable, within)
    return count
