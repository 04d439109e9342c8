"""Every query of caches, workspace layers, artifacts and test results."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import Artifact, Cache, Job, TestResult, WorkspaceLayer


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


# -- caches ---------------------------------------------------------------------------------------


async def cache_by_key(session: AsyncSession, project_id: uuid.UUID, key: str) -> Cache | None:
    query = select(Cache).where(Cache.project_id == project_id, Cache.key == key)
    return (await session.execute(query)).scalar_one_or_none()


async def newest_cache_with_prefix(session: AsyncSession, project_id: uuid.UUID, prefix: str) -> Cache | None:
    """The most recently saved cache whose key starts with ``prefix`` (case-sensitive on both
    databases, and no LIKE wildcards to escape)."""
    query = (
        select(Cache)
        .where(Cache.project_id == project_id, func.substr(Cache.key, 1, len(prefix)) == prefix)
        .order_by(Cache.created_at.desc(), Cache.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


# -- workspaces -----------------------------------------------------------------------------------


async def layers_of(session: AsyncSession, job_ids: Sequence[uuid.UUID]) -> list[WorkspaceLayer]:
    if not job_ids:
        return []
    query = (
        select(WorkspaceLayer)
        .where(WorkspaceLayer.job_id.in_(job_ids))
        .order_by(WorkspaceLayer.created_at, WorkspaceLayer.id)
    )
    return list((await session.execute(query)).scalars())


async def get_layer(session: AsyncSession, layer_id: uuid.UUID) -> WorkspaceLayer | None:
    return await session.get(WorkspaceLayer, layer_id)


async def jobs_of_workflow(session: AsyncSession, workflow_id: uuid.UUID) -> list[Job]:
    return list((await session.execute(select(Job).where(Job.workflow_id == workflow_id))).scalars())


# -- artifacts ------------------------------------------------------------------------------------


async def artifacts_of(session: AsyncSession, job_id: uuid.UUID, after: int, limit: int) -> list[Artifact]:
    query = select(Artifact).where(Artifact.job_id == job_id, Artifact.id > after).order_by(Artifact.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def artifact(session: AsyncSession, job_id: uuid.UUID, node_index: int, path: str) -> Artifact | None:
    query = (
        select(Artifact)
        .where(Artifact.job_id == job_id, Artifact.node_index == node_index, Artifact.path == path)
        .order_by(Artifact.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


# -- test results ---------------------------------------------------------------------------------


async def add_test_results(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(TestResult.__table__.insert(), list(rows))  # type: ignore[attr-defined]


async def count_test_results(session: AsyncSession, job_id: uuid.UUID) -> int:
    return int((await session.execute(select(func.count()).where(TestResult.job_id == job_id))).scalar_one())


async def count_artifacts(session: AsyncSession, job_id: uuid.UUID) -> int:
    return int((await session.execute(select(func.count()).where(Artifact.job_id == job_id))).scalar_one())


async def test_results_of(session: AsyncSession, job_id: uuid.UUID, after: int, limit: int) -> list[TestResult]:
    query = (
        select(TestResult)
        .where(TestResult.job_id == job_id, TestResult.id > after)
        .order_by(TestResult.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def recent_test_results(session: AsyncSession, project_id: uuid.UUID, limit: int) -> list[Any]:
    """The newest ``limit`` test results of a project, newest first, as (job_id, file, classname,
    name, run_time) rows: what test splitting by timings needs, bounded so a claim stays fast."""
    query = (
        select(TestResult.job_id, TestResult.file, TestResult.classname, TestResult.name, TestResult.run_time)
        .where(TestResult.project_id == project_id)
        .order_by(TestResult.created_at.desc(), TestResult.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).all())


# -- the blob sweep -------------------------------------------------------------------------------


async def referenced_blobs(session: AsyncSession, blob_ids: Sequence[str]) -> set[str]:
    """Which of ``blob_ids`` a cache, a workspace layer or an artifact still records."""
    query = union(
        select(Cache.blob_id).where(Cache.blob_id.in_(blob_ids)),
        select(WorkspaceLayer.blob_id).where(WorkspaceLayer.blob_id.in_(blob_ids)),
        select(Artifact.blob_id).where(Artifact.blob_id.in_(blob_ids)),
    )
    return set((await session.execute(query)).scalars())


async def delete_caches_created_before(session: AsyncSession, cutoff: datetime) -> int:
    """Deletes the caches saved before ``cutoff``; their bytes go with the next blob sweep."""
    result = await session.execute(delete(Cache).where(Cache.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
