"""Usage exports (docs/compatibility.md, "Usage exports").

Only an organization's admins export its usage (and that of the shared organizations they also
admin). ``start`` is at most a year ago and ``end`` at most 31 days after it. The export is written
after the request's commit, in the background: the job runs stream from the database in batches into
a gzip CSV (CircleCI's columns; no quoting, backslash escapes, ``\\N`` for NULL) stored as a blob, then
the export is ``completed`` with its parts; any error ends it ``failed`` with the reason. Download
URLs are signed and expire in an hour; they need no token.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import hmac
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import ROLE_ADMIN, Principal, require_role
from circlet.blobs import BlobStore
from circlet.db.engine import Database
from circlet.db.types import utcnow
from circlet.http.errors import BadRequest, NotFound, Unauthorized
from circlet.http.responses import timestamp
from circlet.usage import repository as usage

MISSING_ORG = "Organization not found."
MISSING_EXPORT = "Usage export not found."
BAD_BODY = "Unexpected request body provided."
LONGEST_RANGE = timedelta(days=31)
OLDEST_START = timedelta(days=365)
URL_SECONDS = 3600
BATCH = 5000
COLUMNS = (
    "ORGANIZATION_ID",
    "ORGANIZATION_NAME",
    "ORGANIZATION_CREATED_DATE",
    "PROJECT_ID",
    "PROJECT_NAME",
    "PROJECT_CREATED_DATE",
    "LAST_BUILD_FINISHED_AT",
    "VCS_NAME",
    "VCS_URL",
    "VCS_BRANCH",
    "PIPELINE_ID",
    "PIPELINE_CREATED_AT",
    "PIPELINE_NUMBER",
    "IS_UNREGISTERED_USER",
    "PIPELINE_TRIGGER_SOURCE",
    "PIPELINE_TRIGGER_USER_ID",
    "WORKFLOW_ID",
    "WORKFLOW_NAME",
    "WORKFLOW_FIRST_JOB_QUEUED_AT",
    "WORKFLOW_FIRST_JOB_STARTED_AT",
    "WORKFLOW_STOPPED_AT",
    "IS_WORKFLOW_SUCCESSFUL",
    "JOB_NAME",
    "JOB_RUN_NUMBER",
    "JOB_ID",
    "JOB_RUN_DATE",
    "JOB_RUN_QUEUED_AT",
    "JOB_RUN_STARTED_AT",
    "JOB_RUN_STOPPED_AT",
    "JOB_BUILD_STATUS",
    "RESOURCE_CLASS",
    "OPERATING_SYSTEM",
    "EXECUTOR",
    "PARALLELISM",
    "JOB_RUN_SECONDS",
    "MEDIAN_CPU_UTILIZATION_PCT",
    "MAX_CPU_UTILIZATION_PCT",
    "MEDIAN_RAM_UTILIZATION_PCT",
    "MAX_RAM_UTILIZATION_PCT",
    "COMPUTE_CREDITS",
    "DLC_CREDITS",
    "USER_CREDITS",
    "STORAGE_CREDITS",
    "NETWORK_CREDITS",
    "LEASE_CREDITS",
    "LEASE_OVERAGE_CREDITS",
    "IPRANGES_CREDITS",
    "TOTAL_CREDITS",
)
NULL = "\\N"
log = logging.getLogger("circlet.usage")


def parse_id(text: str, missing: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(missing) from None


def _time(value: datetime | str | None) -> str:
    if value is None:
        return NULL
    return value if isinstance(value, str) else timestamp(value)


def _text(value: Any) -> str:
    return NULL if value is None else str(value)


def csv_row(
    row: Sequence[Any],
    last_finished: Mapping[uuid.UUID, datetime],
    firsts: Mapping[uuid.UUID, tuple[datetime | None, datetime | None]],
    rates: Mapping[str, float],
) -> list[str]:
    """One job run as the export's 48 columns."""
    (
        org_id,
        org_name,
        org_created,
        vcs_type,
        project_id,
        project_name,
        project_created,
        project_url,
        pipeline_url,
        branch,
        pipeline_id,
        pipeline_created,
        pipeline_number,
        trigger_type,
        actor_id,
        workflow_id,
        workflow_name,
        workflow_stopped,
        workflow_status,
        job_name,
        job_number,
        job_id,
        queued,
        started,
        stopped,
        status,
        resource_class,
        executor,
        parallelism,
        _position,
    ) = row
    first_queued, first_started = firsts.get(workflow_id, (None, None))
    seconds = (
        (datetime.fromisoformat(stopped) - datetime.fromisoformat(started)).total_seconds()
        if started and stopped
        else None
    )
    credits = (seconds or 0) / 60 * (parallelism or 1) * rates.get(resource_class, 0.0)
    return [
        str(org_id),
        org_name,
        _time(org_created),
        str(project_id),
        project_name,
        _time(project_created),
        _time(last_finished.get(project_id)),
        vcs_type,
        pipeline_url or project_url or NULL,
        _text(branch),
        str(pipeline_id),
        _time(pipeline_created),
        str(pipeline_number),
        "false" if actor_id else "true",
        trigger_type,
        _text(actor_id),
        str(workflow_id),
        workflow_name,
        _time(first_queued),
        _time(first_started),
        _time(workflow_stopped),
        "true" if workflow_status == "success" else "false",
        job_name,
        _text(job_number),
        str(job_id),
        started[:10] if started else NULL,
        _time(queued),
        _time(started),
        _time(stopped),
        status,
        resource_class,
        "macos" if executor == "macos" else "windows" if executor == "windows" else "linux",
        executor,
        str(parallelism),
        NULL if seconds is None else str(round(seconds)),
        NULL,  # circlet does not sample CPU or RAM
        NULL,
        NULL,
        NULL,
        f"{credits:.4f}",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        f"{credits:.4f}",
    ]


@dataclass
class UsageService:
    database: Database
    blobs: BlobStore
    key: bytes
    base_url: str
    rates: Mapping[str, float] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    # -- requests --------------------------------------------------------------------------------

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        org_id: str,
        start: datetime,
        end: datetime,
        shared_org_ids: Sequence[uuid.UUID],
    ) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_ADMIN, missing=MISSING_ORG, action="export usage")
        for shared in shared_org_ids:
            require_role(principal, shared, ROLE_ADMIN, missing=MISSING_ORG, action="export usage")
        if start.tzinfo is None or end.tzinfo is None:
            raise BadRequest(f"{BAD_BODY} start and end need a time zone.")
        now = utcnow()
        if start < now - OLDEST_START:
            raise BadRequest(f"{BAD_BODY} start must be within the last year.")
        if end < start or end - start > LONGEST_RANGE:
            raise BadRequest(f"{BAD_BODY} end must be after start, by at most 31 days.")
        export = await usage.add_export(session, org, principal.user_id, start, end, shared_org_ids)
        return {
            "usage_export_job_id": export.id,
            "state": export.state,
            "start": timestamp(export.start),
            "end": timestamp(export.end),
            "download_urls": [],
        }

    async def get(self, session: AsyncSession, principal: Principal, org_id: str, export_id: str) -> dict[str, Any]:
        org = parse_id(org_id, MISSING_ORG)
        require_role(principal, org, ROLE_ADMIN, missing=MISSING_ORG, action="read usage exports")
        export = await usage.get_export(session, parse_id(export_id, MISSING_EXPORT))
        if export is None or export.org_id != org:
            raise NotFound(MISSING_EXPORT)
        body: dict[str, Any] = {
            "usage_export_job_id": export.id,
            "state": export.state,
            "download_urls": [self.download_url(export.id, n) for n in range(len(export.blob_ids))]
            if export.state == "completed"
            else [],
        }
        if export.error_reason is not None:
            body["error_reason"] = export.error_reason
        return body

    # -- downloads -------------------------------------------------------------------------------

    def _signature(self, export_id: uuid.UUID, part: int, expires: int) -> str:
        return hmac.new(self.key, f"{export_id}/{part}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def download_url(self, export_id: uuid.UUID, part: int) -> str:
        expires = int(time.time()) + URL_SECONDS
        signature = self._signature(export_id, part, expires)
        return f"{self.base_url}/api/v2/usage-exports/{export_id}/{part}.csv.gz?expires={expires}&signature={signature}"

    async def download(
        self, session: AsyncSession, export_id: str, part: int, expires: str | None, signature: str | None
    ) -> str:
        """The blob a signed URL names; 401 when the URL is not one we made or has expired."""
        invalid = Unauthorized("Invalid or expired download URL.")
        export_uuid = parse_id(export_id, MISSING_EXPORT)
        if not (expires and signature and expires.isascii() and expires.isdigit() and len(expires) < 12):
            raise invalid
        expected = self._signature(export_uuid, part, int(expires)).encode()
        if (
            not hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape"))
            or int(expires) < time.time()
        ):
            raise invalid
        export = await usage.get_export(session, export_uuid)
        if export is None or export.state != "completed" or not 0 <= part < len(export.blob_ids):
            raise NotFound(MISSING_EXPORT)
        return export.blob_ids[part]

    # -- the background writer -------------------------------------------------------------------

    def start(self, export_id: uuid.UUID) -> None:
        """Run the export in the background (called after the commit that made its row visible)."""
        task = asyncio.create_task(self.write(export_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def write(self, export_id: uuid.UUID) -> None:
        try:
            blob_id, rows = await self._write(export_id)
        except Exception as error:  # noqa: BLE001 - any failure ends the export failed, with its reason
            log.exception("usage export failed", extra={"export_id": str(export_id)})
            async with self.database.writing() as session:
                await usage.finish_export(session, export_id, "failed", [], 0, f"{type(error).__name__}: {error}")
            return
        async with self.database.writing() as session:
            await usage.finish_export(session, export_id, "completed", [blob_id], rows, None)

    async def _write(self, export_id: uuid.UUID) -> tuple[str, int]:
        rows = 0
        with tempfile.TemporaryDirectory(prefix="circlet-usage-") as directory:
            path = Path(directory) / "usage.csv.gz"
            async with self.database.reading() as session:
                export = await usage.get_export(session, export_id)
                if export is None:
                    raise LookupError("the export was deleted")
                org_ids = [export.org_id, *(uuid.UUID(o) for o in export.shared_org_ids)]
                last_finished = await usage.last_build_finished(session, org_ids)
                firsts = await usage.workflow_firsts(session, org_ids, export.start, export.end)
                with gzip.open(path, "wt", newline="", encoding="utf-8", compresslevel=1) as handle:
                    writer = csv.writer(handle, quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
                    writer.writerow(COLUMNS)
                    projects = await usage.org_project_ids(session, org_ids)
                    async for batch in usage.job_runs(session, projects, export.start, export.end, BATCH):
                        writer.writerows(csv_row(row, last_finished, firsts, self.rates) for row in batch)
                        rows += len(batch)
            stored = await self.blobs.put(_chunks(path))
        return stored.id, rows


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk
