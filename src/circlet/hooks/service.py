"""Pipelines started by events: forge deliveries and polled ref updates matched against the
project's triggers, and custom webhooks (a trigger's secret URL).

A delivery is handled as a trigger through the API is: a read (who sent it, which triggers
accept it), the git work outside any transaction (fetch the mirror, find the pushed revision),
then one write that claims the delivery and records the pipelines. The claim (a unique row per
delivery) is in the same transaction as the pipelines, so a redelivery, or a second server
polling the same update, creates nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.models import PipelineDefinition, PipelineTrigger, ProjectHookSecret
from circlet.db.types import utcnow
from circlet.definitions import repository as definitions
from circlet.definitions.service import (
    WEBHOOK,
    find_definition,
    project_in_org,
    project_triggers,
    webhook_secret_context,
)
from circlet.engine import states
from circlet.engine.orchestrator import Orchestrator
from circlet.hooks import repository as hooks
from circlet.hooks.events import FORGES, PING, PUSH, BadDelivery, ForgeEvent, delivery_id, parse, verify
from circlet.hooks.presets import Target, accepts, target
from circlet.http.errors import BadRequest, NotFound, PayloadTooLarge, RateLimited, Unauthorized
from circlet.mirrors.git_mirror import Commit, GitError, GitMirrors, RepoSource, UnknownRef
from circlet.pipelines.service import ACTOR_LOGIN_VALUE, PipelineOrigin, PipelineService, Resolved, TriggerRequest
from circlet.projects import repository as projects
from circlet.projects.repository import ProjectInOrg
from circlet.secrets import Keyring, SealedValue

SKIP_MARKERS = ("[ci skip]", "[skip ci]")
FORGE_PROVIDERS = frozenset({"github_app", "github_oauth"})
# `pipeline.trigger.type` and `pipeline.integration_source` per source (CircleCI's words where it has them).
TRIGGER_TYPES = {"github": "github_app", "gitlab": "gitlab", "gitea": "gitea", "poll": "git_poll"}
CUSTOM_WEBHOOK_BYTES = 1024 * 1024
DELIVERY_MEMORY = timedelta(days=7)
MAX_CACHED_COMMITS = 1024


def hook_secret_context(project_id: uuid.UUID) -> str:
    """Associated data binding a sealed forge secret to its project."""
    return f"project-hooks:{project_id}"


def hook_urls(base_url: str, project_id: uuid.UUID, secret: str) -> dict[str, dict[str, str]]:
    return {forge: {"url": f"{base_url}/hooks/{forge}/{project_id}", "secret": secret} for forge in FORGES}


def skipped(commit: Commit) -> bool:
    """CircleCI's rule: the head commit's message (subject or body) decides."""
    message = f"{commit.subject}\n{commit.body}".lower()
    return any(marker in message for marker in SKIP_MARKERS)


async def hook_secret(session: AsyncSession, keyring: Keyring, project_id: uuid.UUID, *, rotate: bool = False) -> str:
    """The project's webhook secret, made on first use (or anew with ``rotate``)."""
    stored = await hooks.get_hook_secret(session, project_id)
    if stored is not None and not rotate:
        return keyring.open(SealedValue(stored.key_id, stored.ciphertext), hook_secret_context(project_id))
    secret = secrets.token_hex(32)
    sealed = keyring.seal(secret, hook_secret_context(project_id))
    await hooks.save_hook_secret(session, project_id, sealed.key_id, sealed.ciphertext, utcnow())
    return secret


async def reseal_hook_secrets(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-seal up to ``batch`` forge and custom webhook secrets under the keyring's current key;
    returns how many (``circlet admin rotate-key``)."""
    rows = await hooks.secrets_not_sealed_with(session, keyring.current_id, batch)
    for row in rows:
        if isinstance(row, ProjectHookSecret):
            context = hook_secret_context(row.project_id)
        else:
            context = webhook_secret_context(row.trigger_id)
        sealed = keyring.seal(keyring.open(SealedValue(row.key_id, row.ciphertext), context), context)
        row.key_id, row.ciphertext = sealed.key_id, sealed.ciphertext
    await session.flush()
    return len(rows)


async def operator_project(session: AsyncSession, org_id: uuid.UUID, name: str) -> uuid.UUID:
    """The project an operator's command names, or a NotFound."""
    project = await projects.find_project_by_name(session, org_id, name)
    if project is None:
        raise NotFound(f"no project {name!r} in the organization")
    return project.id


async def set_polling(session: AsyncSession, project_id: uuid.UUID, every_seconds: int | None) -> None:
    """Poll the project's remote every ``every_seconds`` (None: stop). The first poll records the
    refs it finds; later ones fire the triggers for what changed."""
    await hooks.set_poll(session, project_id, every_seconds, utcnow())


@dataclass(frozen=True)
class Answer:
    """A delivery answered without creating a pipeline (ping, ignored, duplicate, skipped)."""

    message: str
    status: int = 200


@dataclass(frozen=True)
class Fire:
    definition: PipelineDefinition
    trigger: PipelineTrigger
    target: Target


@dataclass(frozen=True)
class EventPlan:
    found: ProjectInOrg
    source: str  # github, gitlab, gitea, poll
    event: ForgeEvent
    delivery: str
    fires: list[Fire]
    actor_id: uuid.UUID | None
    autocancel: bool


@dataclass(frozen=True)
class Built:
    request: TriggerRequest
    resolved: Resolved
    origin: PipelineOrigin


@dataclass(frozen=True)
class WebhookPlan:
    found: ProjectInOrg
    request: TriggerRequest
    origin: PipelineOrigin


@dataclass
class TriggerRate:
    """Per custom webhook trigger: at most ``per_minute`` pipelines a minute, in bursts of up to
    ``burst`` (a token bucket, per server process)."""

    per_minute: int
    burst: int
    _buckets: dict[uuid.UUID, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: uuid.UUID) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_minute / 60)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) > 10_000:
            self._buckets.clear()
        self._buckets[key] = (tokens - 1, now)
        return True


@dataclass
class HookService:
    keyring: Keyring
    mirrors: GitMirrors
    pipelines: PipelineService
    orchestrator: Orchestrator
    webhook_rate: TriggerRate
    # A commit never changes: the ones recently pushed are known without asking git again.
    _commits: dict[tuple[Path, str], Commit] = field(default_factory=dict)
    _lookups: dict[tuple[Path, str], asyncio.Future[Commit]] = field(default_factory=dict)

    # -- forge deliveries -------------------------------------------------------------------------

    async def plan_delivery(
        self, session: AsyncSession, forge: str, project_id: str, headers: dict[str, str], body: bytes
    ) -> EventPlan | Answer:
        """Verify a delivery (401 unless its forge's proof holds) and find the triggers it fires."""
        try:
            found = await project_in_org(session, uuid.UUID(project_id))
        except ValueError:
            found = None
        if found is None:
            raise NotFound("Project not found.")
        stored = await hooks.get_hook_secret(session, found.project.id)
        if stored is None:
            raise Unauthorized("The project has no webhook secret yet: `circlet admin project hooks` makes one.")
        secret = self.keyring.open(SealedValue(stored.key_id, stored.ciphertext), hook_secret_context(found.project.id))
        if not verify(forge, headers, body, secret):
            raise Unauthorized("The delivery is not signed with the project's webhook secret.")
        # A redelivery is refused when it is claimed, in the write (its commit is known by then).
        delivery = delivery_id(forge, headers) or "body:" + hashlib.sha256(body).hexdigest()
        try:
            event = parse(forge, headers, body)
        except BadDelivery as exc:
            raise BadRequest(str(exc)) from None
        if event.name == PING:
            return Answer("pong")
        return await self.plan_event(session, found, forge, event, f"{forge}:{delivery}")

    async def plan_event(
        self, session: AsyncSession, found: ProjectInOrg, source: str, event: ForgeEvent, delivery: str
    ) -> EventPlan | Answer:
        if event.name not in (PUSH, "pull_request"):
            return Answer(f"Nothing to do: {event.reason}.")
        project = found.project
        fires = [
            Fire(definition, trigger, target(event))
            for definition, trigger in await project_triggers(session, project)
            if not trigger.disabled
            and trigger.event_source.get("provider") in FORGE_PROVIDERS
            and accepts(trigger.event_preset, event, project.default_branch)
        ]
        if not fires:
            return Answer("No enabled trigger of the project accepts this event.")
        settings = await projects.get_settings(session, project.id)
        return EventPlan(
            found,
            source,
            event,
            delivery,
            fires,
            await self._actor(session, found, event.login),
            bool(settings and settings.autocancel_builds),
        )

    async def _actor(self, session: AsyncSession, found: ProjectInOrg, login: str) -> uuid.UUID | None:
        """The circlet user the forge's login names, if they belong to the project's organization."""
        if not login:
            return None
        return await hooks.member_by_login(session, login, found.org.id)

    async def build(self, plan: EventPlan) -> list[Built] | Answer:
        """The git work: fetch the mirror, find each target's revision (the one pushed, never a
        later one), and apply the skip rule to it."""
        built = []
        project = plan.found.project
        for fire in plan.fires:
            url = fire.definition.checkout_repo_url or project.vcs_url
            if not url:
                raise BadRequest("The project has no repository to build (set its vcs_url).")
            source = RepoSource(project.id, url, project.repo_set_by_operator)
            try:
                if fire.target.revision is not None:
                    commit = await self._pushed_commit(source, fire.target.revision)
                else:
                    path = await self.mirrors.fetch(source)
                    commit = await self.mirrors.resolve(path, branch=fire.target.branch, tag=fire.target.tag)
            except UnknownRef as exc:
                raise BadRequest(f"{exc}.") from None
            except GitError as exc:
                raise BadRequest(str(exc)) from None
            if skipped(commit):
                return Answer("The head commit asks to skip CI ([ci skip] or [skip ci]): no pipeline was created.")
            request = TriggerRequest(
                plan.found,
                url,
                fire.target.branch,
                fire.target.tag,
                fire.target.branch,
                fire.target.tag,
                {},
                fire.definition.id,
                fire.definition.config_file_path,
                None,
            )
            built.append(Built(request, Resolved(commit, commit.sha), self._origin(plan, fire)))
        return built

    async def _pushed_commit(self, source: RepoSource, sha: str) -> Commit:
        """The pushed commit, after a fetch of the mirror. Deliveries of one push share one fetch and
        one lookup (a burst of them costs one of each), and a commit once seen is not asked again."""
        key = (self.mirrors.path_for(source), sha)
        cached = self._commits.get(key)
        if cached is not None:
            return cached
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(self._fetch_commit(source, sha))
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(lookup)

    async def _fetch_commit(self, source: RepoSource, sha: str) -> Commit:
        path = await self.mirrors.fetch(source)
        commit = await self.mirrors.commit(path, sha)
        if len(self._commits) >= MAX_CACHED_COMMITS:
            self._commits.pop(next(iter(self._commits)))
        self._commits[(path, sha)] = commit
        return commit

    def _origin(self, plan: EventPlan, fire: Fire) -> PipelineOrigin:
        event = plan.event
        trigger_type = TRIGGER_TYPES[plan.source]
        values: dict[str, Any] = {
            "trigger_source": "webhook",
            "trigger.type": trigger_type,
            "trigger_parameters.circleci.trigger_type": trigger_type,
            "trigger_parameters.circleci.event_type": event.name,
            "trigger_parameters.circleci.actor_id": str(plan.actor_id) if plan.actor_id else None,
            "trigger_parameters.circleci.trigger_id": str(fire.trigger.id),
            ACTOR_LOGIN_VALUE: event.login or None,
            "integration_source": trigger_type,
            "event.name": event.name,
            "event.action": "branch_delete" if event.deleted else event.action,
            "git.base_revision": fire.target.base_revision,
        }
        namespace = "github" if plan.source in ("github", "gitea") else plan.source
        values.update({f"event.{namespace}.{name}": value for name, value in event.details.items()})
        return PipelineOrigin("webhook", plan.actor_id, values)

    async def record(self, session: AsyncSession, plan: EventPlan, built: list[Built]) -> list[dict[str, Any]] | Answer:
        """Claim the delivery and record its pipelines, in one transaction."""
        project = plan.found.project
        if not await hooks.record_delivery(session, project.id, plan.delivery, utcnow()):
            return Answer("This delivery was already received.")
        created = [
            await self.pipelines.create_pipeline(session, None, one.request, one.resolved, origin=one.origin)
            for one in built
        ]
        if plan.autocancel:
            await self._cancel_redundant(session, plan, built, [item["id"] for item in created])
        return created

    async def _cancel_redundant(
        self, session: AsyncSession, plan: EventPlan, built: list[Built], new_ids: list[uuid.UUID]
    ) -> None:
        """CircleCI's auto-cancel of redundant workflows: a new pipeline on a branch other than the
        default cancels the unfinished workflows of the branch's older pipelines."""
        project = plan.found.project
        branches = {one.request.branch for one in built if one.request.branch and one.request.tag is None}
        for branch in branches - {project.default_branch}:
            for workflow in await hooks.redundant_workflows(
                session, project.id, branch, new_ids, states.WORKFLOW_FINAL
            ):
                await self.orchestrator.cancel_workflow(session, workflow, None)

    def start(self, created: list[dict[str, Any]]) -> None:
        for item in created:
            self.pipelines.start(item["id"])

    async def forget_old_deliveries(self, session: AsyncSession) -> None:
        await hooks.forget_deliveries(session, utcnow() - DELIVERY_MEMORY)

    # -- custom webhooks --------------------------------------------------------------------------

    async def plan_webhook(self, session: AsyncSession, trigger_id: str, secret: str, body: bytes) -> WebhookPlan:
        try:
            trigger = await definitions.find_trigger(session, uuid.UUID(trigger_id))
        except ValueError:
            trigger = None
        if trigger is None or trigger.event_source.get("provider") != WEBHOOK:
            raise NotFound("Trigger not found.")
        stored = await definitions.get_webhook_secret(session, trigger.id)
        expected = (
            self.keyring.open(SealedValue(stored.key_id, stored.ciphertext), webhook_secret_context(trigger.id))
            if stored is not None
            else ""
        )
        if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise Unauthorized("The webhook's secret is missing or wrong.")
        if trigger.disabled:
            raise BadRequest("The trigger is disabled: no pipeline was created.")
        if len(body) > CUSTOM_WEBHOOK_BYTES:
            raise PayloadTooLarge("The webhook's body is larger than 1 MiB.")
        try:
            text = body.decode()
            json.loads(text) if text.strip() else None
        except ValueError:
            raise BadRequest("The webhook's body is not JSON.") from None
        if not self.webhook_rate.take(trigger.id):
            raise RateLimited("Too many deliveries to this webhook; retry later.", headers={"Retry-After": "10"})
        found = await project_in_org(session, trigger.project_id)
        if found is None:
            raise NotFound("Trigger not found.")
        definition = await find_definition(session, found, trigger.definition_id)
        checkout = ref_parts(trigger.checkout_ref or found.project.default_branch)
        config = ref_parts(trigger.config_ref) if trigger.config_ref else checkout
        request = TriggerRequest(
            found,
            definition.checkout_repo_url or found.project.vcs_url,
            checkout[0],
            checkout[1],
            config[0],
            config[1],
            {},
            definition.id,
            definition.config_file_path,
            None,
        )
        values: dict[str, Any] = {
            "trigger_source": "webhook",
            "trigger.type": "webhook",
            "trigger_parameters.circleci.trigger_type": "webhook",
            "trigger_parameters.circleci.event_type": "custom_webhook",
            "trigger_parameters.circleci.actor_id": None,
            "trigger_parameters.circleci.trigger_id": str(trigger.id),
            "trigger_parameters.webhook.body": text,
            "event.name": "custom_webhook",
            "event.action": "custom_webhook",
        }
        sender = trigger.event_source.get("webhook", {}).get("sender")
        if sender:
            values[ACTOR_LOGIN_VALUE] = sender
        return WebhookPlan(found, request, PipelineOrigin("webhook", None, values))


def ref_parts(ref: str) -> tuple[str | None, str | None]:
    """A trigger's ref as (branch, tag): ``refs/tags/x`` is a tag, ``refs/heads/x`` or a bare name a branch."""
    if ref.startswith("refs/tags/"):
        return None, ref[len("refs/tags/") :]
    return ref.removeprefix("refs/heads/"), None
