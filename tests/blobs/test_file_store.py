"""The file blob store: whole or absent, synced while it is written, nothing left behind on failure."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import circlet.blobs as blobs
from circlet.blobs import BlobTooLarge, FileBlobStore

MIB = 1024 * 1024


async def _chunks(count: int, size: int = MIB) -> AsyncIterator[bytes]:
    for index in range(count):
        yield bytes([index % 256]) * size
        await asyncio.sleep(0)


async def _read_all(store: FileBlobStore, blob_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(blob_id)])


def _leftovers(root: Path) -> list[Path]:
    return list((root / "tmp").iterdir()) if (root / "tmp").exists() else []


async def test_put_then_get_returns_the_same_bytes(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    stored = await store.put(_chunks(5, 1000))
    assert stored.size == 5000
    assert await _read_all(store, stored.id) == b"".join(bytes([i]) * 1000 for i in range(5))
    assert await store.exists(stored.id)
    assert _leftovers(tmp_path) == []


async def test_the_file_is_synced_while_it_arrives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a 2 MiB writeback step, a 12 MiB body is synced part by part before its end, and the whole of
    it is on disk once the put returns."""
    monkeypatch.setattr(blobs, "WRITEBACK_BYTES", 2 * MIB)
    synced_sizes: list[int] = []
    real_fdatasync = os.fdatasync

    def recording_fdatasync(fd: int) -> None:
        synced_sizes.append(os.fstat(fd).st_size)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    store = FileBlobStore(tmp_path)
    stored = await store.put(_chunks(12))
    assert stored.size == 12 * MIB
    assert synced_sizes, "no sync ran while the body arrived"
    assert min(synced_sizes) < 12 * MIB
    assert await _read_all(store, stored.id) == b"".join(bytes([i]) * MIB for i in range(12))


async def test_too_large_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "WRITEBACK_BYTES", MIB)
    store = FileBlobStore(tmp_path)
    with pytest.raises(BlobTooLarge):
        await store.put(_chunks(6), max_bytes=4 * MIB)
    assert _leftovers(tmp_path) == []
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


async def test_a_failing_body_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "WRITEBACK_BYTES", MIB)

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in _chunks(3):
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await FileBlobStore(tmp_path).put(broken())
    assert _leftovers(tmp_path) == []


async def test_a_cancelled_put_waits_for_its_sync_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a sync runs on its thread: the put waits for that sync before closing the file
    (its descriptor must not be closed, or reused, under it) and removes the partial file."""
    monkeypatch.setattr(blobs, "WRITEBACK_BYTES", MIB)
    sync_started = asyncio.Event()
    loop = asyncio.get_running_loop()
    finished: list[int] = []
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        loop.call_soon_threadsafe(sync_started.set)
        time.sleep(0.3)
        real_fdatasync(fd)  # EBADF here would mean the file was closed under the sync
        finished.append(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)

    async def stalls_after_two() -> AsyncIterator[bytes]:
        async for chunk in _chunks(2):
            yield chunk
        await asyncio.Event().wait()
        yield b""

    put = asyncio.ensure_future(FileBlobStore(tmp_path).put(stalls_after_two()))
    await sync_started.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert len(finished) == 1
    assert _leftovers(tmp_path) == []
