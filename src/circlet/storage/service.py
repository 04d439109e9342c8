"""Rules of the runner's storage calls (caches, workspaces, artifacts, test results) for one claimed
task, and the reads of a job's artifacts and tests. Blobs are written before the unit of work that
records them, so no transaction stays open while a body streams in; a blob whose row is refused is
deleted at once."""

from __future__ import annotations

import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.blobs import BlobStore, BlobTooLarge, StoredBlob
from circlet.db.models import Artifact, Cache, Job, Task, WorkspaceLayer
from circlet.engine import repository as engine
from circlet.http.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from circlet.storage import repository as storage
from circlet.storage.junit import JUnitError, JUnitParser

MAX_KEY = 1024
MAX_KEYS = 16
MAX_PATH = 1024
MAX_TEST_RESULTS_BYTES = 64 * 1024 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
INSERT_BATCH = 1000
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY or CONTROL.search(key):
        raise BadRequest(f"A cache key is 1 to {MAX_KEY} characters, without control characters.")
    return key


def check_relative_path(path: str, what: str = "path") -> str:
    """A relative path of plain components: no absolute name, no ``..``, no empty or ``.`` parts."""
    parts = path.split("/")
    if (
        not path
        or len(path) > MAX_PATH
        or CONTROL.search(path)
        or "\\" in path
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise BadRequest(f"{what} must be a relative path of at most {MAX_PATH} characters, without '..'.")
    return path


@dataclass
class StorageService:
    blobs: BlobStore
    max_upload_bytes: int
    test_results_per_job: int = 250_000
    artifacts_per_job: int = 10_000

    async def store(self, body: AsyncIterable[bytes]) -> StoredBlob:
        try:
            return await self.blobs.put(body, max_bytes=self.max_upload_bytes)
        except BlobTooLarge:
            raise PayloadTooLarge(f"Request body exceeds {self.max_upload_bytes} bytes.") from None

    async def discard(self, blob: StoredBlob) -> None:
        await self.blobs.delete(blob.id)

    def stream(self, blob_id: str) -> AsyncIterator[bytes]:
        try:
            return self.blobs.get(blob_id)
        except FileNotFoundError:
            raise NotFound("The stored bytes are gone.") from None

    @staticmethod
    async def job_of(session: AsyncSession, task: Task) -> Job:
        job = await engine.get_job(session, task.job_id)
        assert job is not None  # tasks cascade with their job
        return job

    # -- caches -----------------------------------------------------------------------------------

    async def find_cache(self, session: AsyncSession, task: Task, keys: list[str]) -> str:
        """The first of ``keys`` that is a prefix of a saved key: the newest such cache's key."""
        if not keys or len(keys) > MAX_KEYS:
            raise BadRequest(f"keys: 1 to {MAX_KEYS} comma-separated cache keys.")
        job = await self.job_of(session, task)
        for key in keys:
            found = await storage.newest_cache_with_prefix(session, job.project_id, check_key(key))
            if found is not None:
                return found.key
        raise NotFound("No cache matches these keys.")

    async def cache(self, session: AsyncSession, task: Task, key: str) -> Cache:
        job = await self.job_of(session, task)
        found = await storage.cache_by_key(session, job.project_id, check_key(key))
        if found is None:
            raise NotFound("No cache has this key.")
        return found

    async def refuse_existing_cache(self, session: AsyncSession, task: Task, key: str) -> None:
        job = await self.job_of(session, task)
        if await storage.cache_by_key(session, job.project_id, check_key(key)) is not None:
            raise Conflict("A cache with this key exists already; caches are immutable.")

    async def save_cache(self, session: AsyncSession, task: Task, key: str, blob: StoredBlob) -> None:
        job = await self.job_of(session, task)
        row = Cache(id=uuid.uuid4(), project_id=job.project_id, key=check_key(key), blob_id=blob.id, size=blob.size)
        if await storage.cache_by_key(session, job.project_id, key) is not None:
            raise Conflict("A cache with this key exists already; caches are immutable.")
        try:
            await storage.add(session, row)
        except IntegrityError:  # saved by a concurrent call since the check
            raise Conflict("A cache with this key exists already; caches are immutable.") from None

    # -- workspaces -------------------------------------------------------------------------------

    async def save_layer(self, session: AsyncSession, task: Task, blob: StoredBlob) -> None:
        job = await self.job_of(session, task)
        row = WorkspaceLayer(
            id=uuid.uuid4(), workflow_id=job.workflow_id, job_id=job.id, blob_id=blob.id, size=blob.size
        )
        await storage.add(session, row)

    async def visible_layers(self, session: AsyncSession, task: Task) -> list[WorkspaceLayer]:
        """Layers of the jobs this job requires, directly or not, in dependency order (upstream first);
        a job a rerun carried over stands for its original, whose layers it sees."""
        job = await self.job_of(session, task)
        by_name = {other.name: other for other in await storage.jobs_of_workflow(session, job.workflow_id)}
        order = upstream_order(job.name, {name: list(other.requires) for name, other in by_name.items()})
        sources: list[uuid.UUID] = []
        for name in order:
            sources.append(await original_job_id(session, by_name[name]))
        rank = {job_id: position for position, job_id in enumerate(sources)}
        layers = await storage.layers_of(session, sources)
        return sorted(layers, key=lambda layer: rank[layer.job_id])  # stable: by creation within a job

    async def layer(self, session: AsyncSession, task: Task, layer_id: uuid.UUID) -> WorkspaceLayer:
        for layer in await self.visible_layers(session, task):
            if layer.id == layer_id:
                return layer
        raise NotFound("No such workspace layer for this job.")

    # -- artifacts and test results ---------------------------------------------------------------

    async def save_artifact(self, session: AsyncSession, task: Task, path: str, blob: StoredBlob) -> None:
        if await storage.count_artifacts(session, task.job_id) >= self.artifacts_per_job:
            raise PayloadTooLarge(f"A job keeps at most {self.artifacts_per_job} artifacts (artifacts_per_job).")
        row = Artifact(job_id=task.job_id, node_index=task.parallel_index, path=path, blob_id=blob.id, size=blob.size)
        await storage.add(session, row)

    @staticmethod
    async def parse_test_results(body: AsyncIterable[bytes]) -> SpooledRows:
        """The test cases of one JUnit file, spooled out as they are parsed (the caller closes them)."""
        parser = JUnitParser()
        rows = SpooledRows()
        size = 0
        try:
            async for chunk in body:
                size += len(chunk)
                if size > MAX_TEST_RESULTS_BYTES:
                    raise PayloadTooLarge(f"A test results file is at most {MAX_TEST_RESULTS_BYTES} bytes.")
                rows.add(parser.feed(chunk))
            rows.add(parser.close())
            return rows
        except JUnitError as exc:
            rows.close()
            raise BadRequest(f"Test results are not JUnit XML circlet accepts: {exc}") from None
        except BaseException:
            rows.close()
            raise

    async def save_test_results(self, session: AsyncSession, task: Task, source: str, rows: SpooledRows) -> int:
        job = await self.job_of(session, task)
        stored = await storage.count_test_results(session, job.id)
        if stored + rows.count > self.test_results_per_job:
            raise PayloadTooLarge(
                f"A job keeps at most {self.test_results_per_job} test results (test_results_per_job): "
                f"{stored} are stored, this file has {rows.count}."
            )
        for batch in rows.batches(INSERT_BATCH):
            await storage.add_test_results(
                session, [{**row, "job_id": job.id, "project_id": job.project_id, "source": source} for row in batch]
            )
        return rows.count


@dataclass
class SpooledRows:
    """Parsed test cases kept in a temporary file, so memory holds one batch, not the whole file."""

    # Outlives the call that fills it: closed by close().
    file: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # noqa: SIM115
    count: int = 0

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.file.write(orjson.dumps(row) + b"\n")
        self.count += len(rows)

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        self.file.seek(0)
        batch: list[dict[str, Any]] = []
        for line in self.file:
            batch.append(orjson.loads(line))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self.file.close()


def upstream_order(name: str, requires: dict[str, list[str]]) -> list[str]:
    """Every job ``name`` requires, directly or not, upstream first (ties by name)."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        for required in requires.get(pending.pop(), []):
            if required in requires and required not in seen:
                seen.add(required)
                pending.append(required)
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(seen):
        ready = sorted(n for n in seen - placed if all(r in placed or r not in seen for r in requires.get(n, [])))
        if not ready:  # a cycle cannot be compiled; be safe anyway
            ready = sorted(seen - placed)
        order.extend(ready)
        placed.update(ready)
    return order


async def original_job_id(session: AsyncSession, job: Job) -> uuid.UUID:
    """The job that actually ran: a rerun's carried-over job points at it (through earlier reruns)."""
    current = job
    for _ in range(1000):
        if current.reused_from is None:
            return current.id
        previous = await engine.get_job(session, current.reused_from)
        if previous is None:
            return current.reused_from
        current = previous
    return current.id
