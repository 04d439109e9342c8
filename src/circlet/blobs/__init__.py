"""circlet's blob store: caches, workspace layers and artifacts, kept out of the database.

``BlobStore`` is the interface; ``FileBlobStore`` keeps blobs as files under ``$CIRCLET_HOME/blobs``.
An S3-compatible store can implement the same five operations.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024
WRITEBACK_BYTES = 16 * 1024 * 1024
BLOB_ID = re.compile(r"^[0-9a-f]{32}$")


class BlobTooLarge(Exception):
    """The stream went past the size allowed for it; nothing was stored."""


@dataclass(frozen=True)
class StoredBlob:
    id: str
    size: int


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> StoredBlob:
        """Store a stream under a new id; all or nothing."""
        ...

    def get(self, blob_id: str) -> AsyncIterator[bytes]:
        """The blob's bytes, in chunks; ``FileNotFoundError`` when there is none."""
        ...

    async def exists(self, blob_id: str) -> bool: ...

    async def delete(self, blob_id: str) -> None:
        """Remove a blob; removing one that is not there is not an error."""
        ...

    def unchanged_since(self, seconds: float) -> Iterator[str]:
        """The ids of blobs stored at least ``seconds`` ago (blocking: iterate on a thread), and on
        the way, whatever a put interrupted by a crash left that long ago is removed."""
        ...


class FileBlobStore:
    """Blobs as files ``ROOT/ab/abcdef...``. A put writes a temporary file in ``ROOT/tmp``, syncs it and
    renames it into place, so a blob is either whole or absent; content is never held in memory. The sync
    overlaps the writing (``_Writeback``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"

    def _path(self, blob_id: str) -> Path:
        if not BLOB_ID.match(blob_id):
            raise FileNotFoundError(blob_id)
        return self.root / blob_id[:2] / blob_id

    async def put(self, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None) -> StoredBlob:
        self._tmp.mkdir(parents=True, exist_ok=True)
        blob_id = uuid.uuid4().hex
        temporary = self._tmp / f"{blob_id}.part"
        size = 0
        try:
            with open(temporary, "wb") as handle:
                writeback = _Writeback(handle)
                try:
                    async for chunk in chunks:
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise BlobTooLarge(f"more than {max_bytes} bytes")
                        handle.write(chunk)
                        writeback.wrote(len(chunk))
                    await writeback.finish()
                finally:
                    await writeback.settle()  # before the file closes: a sync may still hold its descriptor
            target = self._path(blob_id)
            target.parent.mkdir(exist_ok=True)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return StoredBlob(blob_id, size)

    def get(self, blob_id: str) -> AsyncIterator[bytes]:
        return _read(open(self._path(blob_id), "rb"))  # opened now: a missing blob raises here

    async def exists(self, blob_id: str) -> bool:
        try:
            return self._path(blob_id).is_file()
        except FileNotFoundError:
            return False

    async def delete(self, blob_id: str) -> None:
        try:
            self._path(blob_id).unlink(missing_ok=True)
        except FileNotFoundError:
            return

    def unchanged_since(self, seconds: float) -> Iterator[str]:
        cutoff = time.time() - seconds
        for part in _entries(self._tmp):  # a live put writes its part continually: only dead ones are old
            if part.name.endswith(".part") and _modified(part) < cutoff:
                Path(part.path).unlink(missing_ok=True)
        for directory in sorted(_entries(self.root), key=lambda entry: entry.name):
            if len(directory.name) != 2 or not directory.is_dir():
                continue
            for blob in _entries(Path(directory.path)):
                if BLOB_ID.match(blob.name) and blob.name.startswith(directory.name) and _modified(blob) < cutoff:
                    yield blob.name


class _Writeback:
    """Syncs a file being written while it is written. Every ``WRITEBACK_BYTES`` a ``fdatasync`` starts on
    a thread (unless one is still running) while the body keeps arriving, so the disk writes overlap the
    transfer and the final ``fsync`` finds little left to write: a 200 MiB cache spent 0.34 s of its
    0.88 s in one ``fsync`` at the end (docs/performance.md, runner)."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._unsynced = 0
        self._running: asyncio.Future[None] | None = None

    def wrote(self, count: int) -> None:
        self._unsynced += count
        if self._unsynced < WRITEBACK_BYTES or (self._running is not None and not self._running.done()):
            return
        if self._running is not None:
            self._running.result()  # a failed sync fails the put
        self._handle.flush()
        self._unsynced = 0
        self._running = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, self._handle.fileno()))

    async def finish(self) -> None:
        self._handle.flush()
        if self._running is not None:
            await asyncio.shield(self._running)  # shielded: a cancel leaves it to ``settle``
        self._running = asyncio.ensure_future(asyncio.to_thread(os.fsync, self._handle.fileno()))
        await asyncio.shield(self._running)

    async def settle(self) -> None:
        """Wait out a sync still running (a thread cannot be cancelled), whatever happened meanwhile."""
        running = self._running
        if running is None:
            return
        while not running.done():
            try:
                await asyncio.wait([running])
            except asyncio.CancelledError:
                continue  # finish waiting; the put is abandoned anyway
        if not running.cancelled():
            running.exception()  # retrieved, so an error here is not reported as unhandled


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def _modified(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:  # removed meanwhile: as good as new, it is not listed
        return float("inf")


async def _read(handle: BinaryIO) -> AsyncIterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
