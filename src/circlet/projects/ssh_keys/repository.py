"""Queries on a project's additional SSH keys (``project_ssh_keys``), and nothing else."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import ProjectSshKey


class DuplicateSshKey(Exception):
    pass


async def list_ssh_keys(session: AsyncSession, project_id: uuid.UUID) -> list[ProjectSshKey]:
    """Every key row of the project, oldest first."""
    query = (
        select(ProjectSshKey)
        .where(ProjectSshKey.project_id == project_id)
        .order_by(ProjectSshKey.created_at, ProjectSshKey.id)
    )
    return list((await session.execute(query)).scalars())


async def count_ssh_keys(session: AsyncSession, project_id: uuid.UUID) -> int:
    query = select(func.count()).where(ProjectSshKey.project_id == project_id)
    return (await session.execute(query)).scalar_one()


async def add_ssh_key(session: AsyncSession, key: ProjectSshKey) -> None:
    """Inserts the row; ``DuplicateSshKey`` when the project has that key for that hostname already
    (a concurrent add of the same key is caught by the unique constraint, not only by a lookup)."""
    session.add(key)
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable on PostgreSQL.
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise DuplicateSshKey(key.fingerprint_md5) from None


async def find_ssh_keys(
    session: AsyncSession, project_id: uuid.UUID, fingerprint: str, hostname: str | None
) -> list[ProjectSshKey]:
    """The rows of the key with this fingerprint (MD5 ``aa:bb:...`` or ``SHA256:...``), for one
    hostname, or for every hostname when ``hostname`` is ``None``."""
    column = ProjectSshKey.fingerprint_sha256 if fingerprint.startswith("SHA256:") else ProjectSshKey.fingerprint_md5
    query = select(ProjectSshKey).where(ProjectSshKey.project_id == project_id, column == fingerprint)
    if hostname is not None:
        query = query.where(ProjectSshKey.hostname == hostname)
    return list((await session.execute(query.order_by(ProjectSshKey.created_at, ProjectSshKey.id))).scalars())


async def delete_ssh_keys(session: AsyncSession, ids: list[uuid.UUID]) -> None:
    await session.execute(delete(ProjectSshKey).where(ProjectSshKey.id.in_(ids)))


async def ssh_keys_not_sealed_with(session: AsyncSession, key_id: str, limit: int) -> list[ProjectSshKey]:
    query = select(ProjectSshKey).where(ProjectSshKey.key_id != key_id).limit(limit)
    return list((await session.execute(query)).scalars())
