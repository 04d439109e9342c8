"""What may be done with schedules, and by whom (the Schedule tag).

Roles (docs/compatibility.md, "Scheduled pipelines"): members of every role read a project's
schedules; only organization admins create, change and delete them; an outsider gets 404. A
schedule's actor is the caller (`attribution-actor: current`) or the built-in system actor
(`system`); the pipelines it starts are that actor's, for context restrictions as for anything else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.audit import repository as audit
from circlet.auth import ROLE_ADMIN, ROLE_VIEWER, Principal, require_role
from circlet.db.models import Schedule, User
from circlet.db.types import utcnow
from circlet.http.errors import BadRequest, Conflict, NotFound
from circlet.http.pagination import PageTokens
from circlet.http.responses import timestamp
from circlet.http.text import check_single_line_name
from circlet.orgs import repository as orgs
from circlet.pipelines.service import check_parameters, one_ref, slug_of
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.projects.service import ProjectService
from circlet.schedules import repository as schedules
from circlet.schedules.clock import ScheduleClock
from circlet.schedules.schemas import CreateSchedule, UpdateSchedule
from circlet.schedules.timetable import (
    Timetable,
    TimetableError,
    merge_timetables,
    next_fire_after,
    offset_seconds,
    parse_timetable,
)
from circlet.users import repository as users
from circlet.users.avatars import avatar_url

PAGE_SIZE = 20
NAME_LENGTH = 255
DESCRIPTION_LENGTH = 2000
MISSING_SCHEDULE = "Schedule not found."
# Keys of a schedule's `parameters` that name what it builds rather than pipeline parameters.
REF_KEYS = ("branch", "tag")


def check_timetable(body: dict[str, Any]) -> Timetable:
    try:
        return parse_timetable(body)
    except TimetableError as exc:
        raise BadRequest(str(exc)) from None


def check_schedule_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """`branch` or `tag` (a string, not both), and pipeline parameters within the trigger's limits."""
    branch, tag = parameters.get("branch"), parameters.get("tag")
    if branch is None and tag is None:
        raise BadRequest("parameters: must contain branch or tag.")
    for key in REF_KEYS:
        if key in parameters and not isinstance(parameters[key], str):
            raise BadRequest(f"parameters.{key}: a string.")
    one_ref(branch, tag, "parameters.")
    check_parameters({k: v for k, v in parameters.items() if k not in REF_KEYS})
    return parameters


def check_name(name: str) -> None:
    check_single_line_name(name, "name")
    if not name.strip() or name != name.strip() or len(name) > NAME_LENGTH:
        raise BadRequest(f"name: 1 to {NAME_LENGTH} characters, no surrounding whitespace.")


def check_description(description: str | None) -> None:
    if description is not None and len(description) > DESCRIPTION_LENGTH:
        raise BadRequest(f"description: at most {DESCRIPTION_LENGTH} characters.")


def next_fire_time(schedule_id: uuid.UUID, timetable: Timetable, now: datetime) -> datetime | None:
    return next_fire_after(timetable, offset_seconds(schedule_id, timetable.per_hour), now)


def actor_body(user: User | None, actor_id: uuid.UUID, base_url: str) -> dict[str, Any]:
    if user is None:
        return {"id": actor_id, "login": "", "name": "", "avatar_url": avatar_url(base_url, actor_id)}
    return {
        "id": user.id,
        "login": user.login,
        "name": user.name,
        "avatar_url": avatar_url(base_url, user.id, user.avatar_url),
    }


def schedule_body(schedule: Schedule, found: ProjectInOrg, actor: User | None, base_url: str) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "name": schedule.name,
        "description": schedule.description,
        "timetable": schedule.timetable,
        "project-slug": slug_of(found.project, found.org),
        "actor": actor_body(actor, schedule.actor_id, base_url),
        "parameters": schedule.parameters,
        "created-at": timestamp(schedule.created_at),
        "updated-at": timestamp(schedule.updated_at),
    }


@dataclass
class ScheduleService:
    project_service: ProjectService
    page_tokens: PageTokens
    clock: ScheduleClock

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        body: CreateSchedule,
        base_url: str,
    ) -> dict[str, Any]:
        found = await self.project_service.find(session, principal, slug, ROLE_ADMIN, "create schedules")
        check_name(body.name)
        check_description(body.description)
        timetable = check_timetable(body.timetable)
        parameters = check_schedule_parameters(dict(body.parameters))
        actor = await self._actor(session, principal, body.attribution_actor)
        conflict = f"A schedule named {body.name!r} already exists in this project."
        if await schedules.find_schedule_by_name(session, found.project.id, body.name) is not None:
            raise Conflict(conflict)
        now = utcnow()
        schedule_id = uuid.uuid4()
        schedule = Schedule(
            id=schedule_id,
            project_id=found.project.id,
            name=body.name,
            description=body.description,
            timetable=timetable.as_json(),
            attribution=body.attribution_actor,
            actor_id=actor.id,
            parameters=parameters,
            next_fire_at=next_fire_time(schedule_id, timetable, self.clock.now()),
            created_at=now,
            updated_at=now,
        )
        try:
            await schedules.add_schedule(session, schedule)
        except schedules.DuplicateSchedule:
            raise Conflict(conflict) from None
        await self._audit(session, principal, "schedule.create", schedule, found)
        return schedule_body(schedule, found, actor, base_url)

    async def get(
        self, session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, base_url: str
    ) -> dict[str, Any]:
        schedule, found = await self._find(session, principal, schedule_id, ROLE_VIEWER, "read schedules")
        return schedule_body(schedule, found, await users.get_user(session, schedule.actor_id), base_url)

    async def list_for_project(
        self,
        session: AsyncSession,
        principal: Principal,
        slug: tuple[str, str, str],
        page_token: str | None,
        base_url: str,
    ) -> dict[str, Any]:
        found = await self.project_service.find(session, principal, slug, ROLE_VIEWER, "read schedules")
        scope = f"schedules:{found.project.id}"
        after = None
        if page_token:
            position = self.page_tokens.decode(page_token, scope)
            try:
                after = (datetime.fromisoformat(position[0]), uuid.UUID(position[1]))
            except (ValueError, TypeError, IndexError):
                raise BadRequest("page-token is invalid.") from None
        rows = await schedules.list_schedules(session, found.project.id, after, PAGE_SIZE + 1)
        actors: dict[uuid.UUID, User | None] = {}
        items = []
        for schedule in rows[:PAGE_SIZE]:
            if schedule.actor_id not in actors:
                actors[schedule.actor_id] = await users.get_user(session, schedule.actor_id)
            items.append(schedule_body(schedule, found, actors[schedule.actor_id], base_url))
        next_token = None
        if len(rows) > PAGE_SIZE:
            last = rows[PAGE_SIZE - 1]
            next_token = self.page_tokens.encode(scope, [last.created_at.isoformat(), str(last.id)])
        return {"items": items, "next_page_token": next_token}

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        schedule_id: uuid.UUID,
        body: UpdateSchedule,
        base_url: str,
    ) -> dict[str, Any]:
        schedule, found = await self._find(session, principal, schedule_id, ROLE_ADMIN, "change schedules")
        given = body.model_fields_set
        if body.name is not None and body.name != schedule.name:
            check_name(body.name)
            if await schedules.find_schedule_by_name(session, found.project.id, body.name) is not None:
                raise Conflict(f"A schedule named {body.name!r} already exists in this project.")
            schedule.name = body.name
        if "description" in given:
            check_description(body.description)
            schedule.description = body.description
        if body.parameters is not None:
            schedule.parameters = check_schedule_parameters(dict(body.parameters))
        if body.timetable is not None:
            timetable = check_timetable(merge_timetables(schedule.timetable, body.timetable))
            schedule.timetable = timetable.as_json()
            schedule.next_fire_at = next_fire_time(schedule.id, timetable, self.clock.now())
        if body.attribution_actor is not None:
            actor = await self._actor(session, principal, body.attribution_actor)
            schedule.attribution, schedule.actor_id = body.attribution_actor, actor.id
        schedule.updated_at = utcnow()
        try:
            await schedules.save_schedule(session, schedule)
        except schedules.DuplicateSchedule:
            raise Conflict(f"A schedule named {schedule.name!r} already exists in this project.") from None
        await self._audit(session, principal, "schedule.update", schedule, found)
        return schedule_body(schedule, found, await users.get_user(session, schedule.actor_id), base_url)

    async def delete(self, session: AsyncSession, principal: Principal, schedule_id: uuid.UUID) -> None:
        schedule, found = await self._find(session, principal, schedule_id, ROLE_ADMIN, "delete schedules")
        await schedules.delete_schedule(session, schedule.id)
        await self._audit(session, principal, "schedule.delete", schedule, found)

    async def _find(
        self, session: AsyncSession, principal: Principal, schedule_id: uuid.UUID, least: str, action: str
    ) -> tuple[Schedule, ProjectInOrg]:
        schedule = await schedules.get_schedule(session, schedule_id)
        project = await projects.get_project(session, schedule.project_id) if schedule else None
        org = await orgs.get_org(session, project.org_id) if project else None
        if schedule is None or project is None or org is None:
            raise NotFound(MISSING_SCHEDULE)
        require_role(principal, org.id, least, missing=MISSING_SCHEDULE, action=action)
        return schedule, ProjectInOrg(project, org)

    @staticmethod
    async def _actor(session: AsyncSession, principal: Principal, attribution: str) -> User:
        if attribution == "current":
            user = await users.get_user(session, principal.user_id)
            assert user is not None  # the caller authenticated as this user
            return user
        system = await schedules.ensure_system_actor(session)
        if system is None:
            raise Conflict(
                f"The system actor's login {schedules.SYSTEM_ACTOR_LOGIN!r} belongs to a user of this server: "
                "schedules cannot run as the system actor."
            )
        return system

    @staticmethod
    async def _audit(
        session: AsyncSession, principal: Principal, action: str, schedule: Schedule, found: ProjectInOrg
    ) -> None:
        await audit.record(
            session,
            actor_id=principal.user_id,
            actor=principal.login,
            action=action,
            target_type="schedule",
            target_id=schedule.id,
            org_id=found.org.id,
            details={"name": schedule.name, "project_id": str(found.project.id)},
        )
