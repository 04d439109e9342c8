"""circlet's blob store: caches, workspace layers and artifacts, kept out of the database.

``BlobStore`` is the interface; ``FileBlobStore`` keeps blobs as files under ``$CIRCLET_HOME/blobs``.
An S3-compatible store can implement the same four operations.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024
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


class FileBlobStore:
    """Blobs as files ``ROOT/ab/abcdef...``. A put writes a temporary file in ``ROOT/tmp``, syncs it and
    renames it into place, so a blob is either whole or absent; content is never held in memory."""

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
                async for chunk in chunks:
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(f"more than {max_bytes} bytes")
                    handle.write(chunk)
                handle.flush()
                await asyncio.to_thread(os.fsync, handle.fileno())
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


async def _read(handle: BinaryIO) -> AsyncIterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
