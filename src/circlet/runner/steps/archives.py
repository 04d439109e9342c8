"""tar.gz archives of the storage steps, made and unpacked off the event loop. Member names are
always relative; unpacking refuses absolute and ``..`` names outright, then uses tarfile's ``data``
filter (no links leaving the target, no special files), so a tampered archive cannot write outside
its target."""

from __future__ import annotations

import asyncio
import glob
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

COMPRESS_LEVEL = 1
"""gzip's fastest level: caches are about speed, and level 1 still shrinks typical trees a lot."""
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


def _create(archive: Path, base: Path, members: Sequence[Path]) -> int:
    count = 0
    with tarfile.open(archive, "w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for member in members:
            tar.add(member, arcname=str(member.relative_to(base)))
            count += 1
    return count


async def create(archive: Path, base: Path, members: Sequence[Path]) -> int:
    """A tar.gz at ``archive`` of ``members`` (under ``base``), named relative to ``base``."""
    return await asyncio.to_thread(_create, archive, base, members)


def _extract(archive: Path, target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
                    raise ArchiveError(f"the archive has a member outside its root: {member.name[:200]!r}")
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(f"the archive could not be unpacked: {exc}") from None
    return len(members)


async def extract(archive: Path, target: Path) -> int:
    return await asyncio.to_thread(_extract, archive, target)
