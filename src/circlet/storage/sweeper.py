"""The server's clean-up of stored bytes: caches past their retention, and blobs no row records.

Rows go without their bytes in several ways (a project or an organization deleted with
everything under it, in one transaction; a cache expired), and a blob store is not transactional with
the database. So nothing deletes bytes when it deletes rows; this sweep, every few hours, deletes the
blobs no cache, workspace layer or artifact records. A blob is written before the row that records it
(``storage.service``), so one younger than ``BLOB_GRACE_SECONDS`` may be about to be recorded and is
never swept; nothing records an old blob anew.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from datetime import timedelta

from circlet.blobs import BlobStore
from circlet.db.engine import Database
from circlet.db.types import utcnow
from circlet.storage import repository as storage

log = logging.getLogger("circlet.storage")

BLOB_GRACE_SECONDS = 24 * 3600.0
SWEEP_BATCH = 500  # blob ids looked up per query


@dataclass
class BlobSweeper:
    database: Database
    blobs: BlobStore
    cache_retention: timedelta
    interval_seconds: float

    async def run(self) -> None:
        """Sweep now, then every ``interval_seconds``, until cancelled."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("blob sweep failed")
            await asyncio.sleep(self.interval_seconds)

    async def sweep(self, *, grace_seconds: float = BLOB_GRACE_SECONDS) -> tuple[int, int]:
        """Deletes expired caches, then unrecorded blobs at least ``grace_seconds`` old: (caches, blobs)."""
        async with self.database.writing() as session:
            expired = await storage.delete_caches_created_before(session, utcnow() - self.cache_retention)
        deleted = 0
        found = self.blobs.unchanged_since(grace_seconds)
        while batch := await asyncio.to_thread(list, itertools.islice(found, SWEEP_BATCH)):
            async with self.database.reading() as session:
                recorded = await storage.referenced_blobs(session, batch)
            for blob_id in batch:
                if blob_id not in recorded:
                    await self.blobs.delete(blob_id)
                    deleted += 1
        if expired or deleted:
            log.info("blob sweep: %d expired caches, %d unrecorded blobs deleted", expired, deleted)
        return expired, deleted
