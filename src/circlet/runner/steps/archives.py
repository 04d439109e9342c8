"""tar archives of the storage steps, made and unpacked off the event loop. Member names are
always relative; unpacking refuses absolute and ``..`` names outright and keeps symbolic links as
they are (a cached venv's ``bin/python`` points at an absolute interpreter), but never writes through
one: a member whose directory resolves outside the target is refused, and a link standing where a
member goes is replaced, not followed (see ``_KeepLinks``).

Archives are made uncompressed: gzip, even at level 1, ran at ~40 MB/s on one core and made
``save_cache`` of 200 MB take 14-23x as long as ``tar -cf`` plus ``cp`` (docs/performance.md, issue 6);
a plain tar is written and read as fast as the disk allows. Unpacking detects the compression, so
the tar.gz archives stored before this change still restore."""

from __future__ import annotations

import asyncio
import glob
import io
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

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
    return [path] if path.exists() or path.is_symlink() else []


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


def _create(archive: Path, base: Path, members: Sequence[Path]) -> int:
    count = 0
    # Unbuffered: headers go straight to the file, so the kernel copies that follow land after them.
    with open(archive, "wb", buffering=0) as file, _Tar.open(fileobj=file, mode="w") as tar:
        for member in members:
            tar.add(member, arcname=str(member.relative_to(base)))
            count += 1
    return count


async def create(archive: Path, base: Path, members: Sequence[Path]) -> int:
    """A tar at ``archive`` of ``members`` (under ``base``), named relative to ``base``."""
    return await asyncio.to_thread(_create, archive, base, members)


class _KeepLinks:
    """The extraction filter: tarfile's ``data`` rules (no special files, no setuid or group/other
    write bits, no ownership, hard links only to files inside the target), except that a symbolic
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

    def __init__(self, target: Path) -> None:
        self.root = os.path.realpath(target)

    def __call__(self, member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
        place = os.path.join(self.root, member.name)
        directory = os.path.realpath(os.path.dirname(place))
        if os.path.commonpath([directory, self.root]) != self.root:
            raise ArchiveError(f"the archive writes {member.name[:200]!r} through a link leading outside the target")
        if os.path.islink(place) or (os.path.lexists(place) and not os.path.isdir(place)):
            os.unlink(place)
        if not member.issym():
            return tarfile.data_filter(member, self.root)
        kept = tarfile.tar_filter(member, self.root)  # name and mode rules, not the link's target
        return kept.replace(uid=None, gid=None, uname=None, gname=None, deep=False)


def _extract(archive: Path, target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    keep_links = _KeepLinks(target)
    try:
        with _Tar.open(archive, "r:*") as tar:  # a tar, or a tar.gz made before issue 6
            members = tar.getmembers()
            for member in members:
                if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
                    raise ArchiveError(f"the archive has a member outside its root: {member.name[:200]!r}")
            for member in members:
                # One at a time, not ``extractall``: that sets directories' times at the end, through
                # whatever stands at their path by then.
                tar.extract(member, keep_links.root, set_attrs=not member.isdir(), filter=keep_links)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"the archive could not be unpacked: {exc}") from None
    return len(members)


async def extract(archive: Path, target: Path) -> int:
    return await asyncio.to_thread(_extract, archive, target)
