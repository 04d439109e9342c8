"""The scheduler: an engine loop of every server process that fires due schedules.

Idle, it costs one query per look: the smallest ``next_fire_at`` of all schedules (an index lookup,
whatever their number), then it sleeps until that time, or ``scheduler_poll_seconds`` (a minute) at
most, so that schedules other processes created are seen; this process's own writes wake it at once.

Firing a schedule is the API trigger's two steps: the git work (fetch the mirror, resolve the
branch or tag) outside any transaction, then one unit of work that claims the fire time and creates
the pipeline. The claim is two statements in that same transaction: a conditional update moving
``next_fire_at`` from the value this process read (another process that fired or skipped it first
moved it, and the update changes no row), and a row per schedule and fire time whose primary key
refuses a second claim. So each fire time makes at most one pipeline, whatever the number of
processes, and none is lost while one process runs.

Which fire time (docs/compatibility.md, "Scheduled pipelines"): the latest one at or before now, if
it is not before ``next_fire_at`` (not already handled) and less than one period (3600 / per-hour
seconds) late. A server that was down across fire times fires at most the latest of them, and only
if it is less than a period late; the others are skipped, and ``next_fire_at`` moves past now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.auth import RANK, ROLE_MEMBER, Principal
from circlet.db.engine import Database
from circlet.db.models import Schedule
from circlet.engine import repository as engine
from circlet.engine import states
from circlet.engine.loops import set_pipeline_state
from circlet.http.errors import BadRequest
from circlet.http.responses import timestamp
from circlet.mirrors.git_mirror import Commit
from circlet.orgs import repository as orgs
from circlet.pipelines.service import PipelineService, Resolved, TriggerRequest
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.schedules import repository as schedules
from circlet.schedules.clock import ScheduleClock
from circlet.schedules.service import REF_KEYS
from circlet.schedules.timetable import latest_fire_at_or_before, next_fire_after, offset_seconds, parse_timetable
from circlet.users import repository as users

log = logging.getLogger("circlet.schedules")

DUE_BATCH = 100  # due schedules read per query
# A fire time's claim is kept this long: longer than any process could still try to claim it
# (a fire time more than one period, at most an hour, late is never fired).
CLAIMS_KEPT = timedelta(hours=2)
PRUNE_EVERY = timedelta(hours=1)
RETRY_SECONDS = 1.0
NOTHING_RESOLVED = Resolved(Commit("", "", ""), "")


@dataclass(frozen=True)
class Firing:
    """What one fire of a schedule needs, read before the git work."""

    schedule_id: uuid.UUID
    name: str
    expected: datetime  # the next_fire_at this process read
    fire_at: datetime | None  # None: skip (not due, or too late)
    following: datetime | None
    request: TriggerRequest | None
    actor: Principal | None
    refusal: str | None  # why the actor may not run it


def scheduled_values(schedule_id: uuid.UUID, name: str, actor_id: uuid.UUID) -> dict[str, Any]:
    """The pipeline values CircleCI sets for a scheduled pipeline (over the API trigger's)."""
    return {
        "trigger_source": "scheduled_pipeline",
        "trigger.type": "schedule",
        "event.name": "schedule",
        "event.action": "schedule",
        "schedule.name": name,
        "schedule.id": str(schedule_id),
        "trigger_parameters.circleci.trigger_type": "schedule",
        "trigger_parameters.circleci.event_type": "schedule",
        "trigger_parameters.circleci.actor_id": str(actor_id),
    }


@dataclass
class Scheduler:
    database: Database
    pipelines: PipelineService
    clock: ScheduleClock
    poll_seconds: float = 60.0
    concurrency: int = 8
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _pruned_at: datetime | None = None

    def wake(self) -> None:
        """A schedule of this process changed: look again now rather than after the sleep."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()  # before the look: a change committed during it wakes the sleep
            try:
                delay = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler round failed")
                delay = self.poll_seconds
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.clock.real_seconds(delay))

    async def tick(self) -> float:
        """One look: fire what is due; returns how long (on the schedules' clock) until the next look."""
        now = self.clock.now()
        async with self.database.reading() as session:
            earliest = await schedules.earliest_fire_time(session)
        if earliest is None:
            return self.poll_seconds
        if earliest > now:
            return min(self.poll_seconds, (earliest - now).total_seconds())
        async with self.database.reading() as session:
            due = await schedules.due_schedules(session, now, DUE_BATCH)
        gate = asyncio.Semaphore(self.concurrency)

        async def handle(schedule_id: uuid.UUID, expected: datetime) -> bool:
            async with gate:
                try:
                    await self.fire(schedule_id, expected, now)
                except Exception:
                    log.exception("firing a schedule failed", extra={"schedule_id": str(schedule_id)})
                    return False
                return True

        handled = await asyncio.gather(*(handle(schedule_id, expected) for schedule_id, expected in due))
        await self._prune(now)
        # A failure (the database, say) is retried after a pause, not in a tight loop.
        return 0.0 if all(handled) else RETRY_SECONDS

    async def fire(self, schedule_id: uuid.UUID, expected: datetime, now: datetime) -> uuid.UUID | None:
        """Fire (or skip) one due schedule; the pipeline's id if this process made one."""
        firing = await self._prepare(schedule_id, expected, now)
        if firing is None:
            return None
        if firing.fire_at is None or firing.request is None or firing.actor is None:
            async with self.database.writing() as session:
                await schedules.advance(session, schedule_id, expected, firing.following)
            return None
        error = None
        resolved = NOTHING_RESOLVED
        if firing.refusal is not None:
            error = {"type": "permission", "message": firing.refusal}
        else:
            try:
                resolved = await self.pipelines.resolve(firing.request)
            except BadRequest as exc:
                error = {"type": "config-fetch", "message": f"Schedule {firing.name!r}: {exc.message}"}
        async with self.database.writing() as session:
            if not await schedules.advance(session, schedule_id, expected, firing.following):
                return None  # another process fired or skipped it, or the schedule changed
            if not await schedules.claim_fire(session, schedule_id, firing.fire_at):
                return None
            created = await self.pipelines.create_pipeline(session, firing.actor, firing.request, resolved)
            pipeline = await engine.get_pipeline(session, created["id"])
            assert pipeline is not None
            # The pipeline is recorded as an API trigger would; a schedule's differs only in its trigger.
            pipeline.trigger_type = "scheduled_pipeline"
            pipeline.values = {**pipeline.values, **scheduled_values(schedule_id, firing.name, firing.actor.user_id)}
            if error is not None:
                set_pipeline_state(pipeline, states.PIPELINE_ERRORED)
                pipeline.errors = [error]
            await schedules.record_fire_pipeline(session, schedule_id, firing.fire_at, pipeline.id)
        log.info(
            "schedule fired",
            extra={
                "schedule_id": str(schedule_id),
                "fire_at": timestamp(firing.fire_at),
                "pipeline_id": str(pipeline.id),
                "errored": error is not None,
            },
        )
        if error is None:
            self.pipelines.start(pipeline.id)
        return pipeline.id

    async def _prepare(self, schedule_id: uuid.UUID, expected: datetime, now: datetime) -> Firing | None:
        async with self.database.reading() as session:
            schedule = await schedules.get_schedule(session, schedule_id)
            if schedule is None or schedule.next_fire_at != expected:
                return None  # deleted, changed, or handled by another process since the query
            timetable = parse_timetable(schedule.timetable)
            offset = offset_seconds(schedule.id, timetable.per_hour)
            latest = latest_fire_at_or_before(timetable, offset, now)
            following = next_fire_after(timetable, offset, max(now, expected))
            on_time = (
                latest is not None and latest >= expected and (now - latest).total_seconds() < timetable.spacing_seconds
            )
            project = await projects.get_project(session, schedule.project_id)
            org = await orgs.get_org(session, project.org_id) if project else None
            if not on_time or project is None or org is None:
                return Firing(schedule.id, schedule.name, expected, None, following, None, None, None)
            found = ProjectInOrg(project, org)
            definition = await self.pipelines.default_definition(session, project)
            actor, refusal = await self._actor(session, schedule, org.id)
        branch = schedule.parameters.get("branch")
        tag = schedule.parameters.get("tag")
        request = TriggerRequest(
            found,
            definition.checkout_repo_url or project.vcs_url,
            branch,
            tag,
            branch,
            tag,
            {name: value for name, value in schedule.parameters.items() if name not in REF_KEYS},
            definition.id,
            definition.config_file_path,
            None,
        )
        return Firing(schedule.id, schedule.name, expected, latest, following, request, actor, refusal)

    @staticmethod
    async def _actor(
        session: AsyncSession, schedule: Schedule, org_id: uuid.UUID
    ) -> tuple[Principal | None, str | None]:
        """The schedule's actor as the pipeline's, and why it may not trigger (None: it may). The
        system actor always may; a user must still be a member (or admin) of the organization."""
        user = await users.get_user(session, schedule.actor_id)
        if user is None:
            return None, None
        principal = Principal(user.id, user.login, user.name, user.avatar_url, token_id=uuid.UUID(int=0))
        if schedule.attribution == "system":
            return principal, None
        role = await orgs.get_membership_role(session, org_id, user.id)
        if role is None or RANK[role] < RANK[ROLE_MEMBER]:
            return principal, (
                f"Schedule {schedule.name!r} runs as {user.login}, who may no longer trigger pipelines in this "
                "organization: set its attribution-actor again."
            )
        return principal, None

    async def _prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self.database.writing() as session:
            await schedules.delete_fires_before(session, now - CLAIMS_KEPT)
