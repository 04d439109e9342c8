"""Polling repositories that cannot send webhooks (a local path, a plain git server).

One loop per server process. A round claims the most overdue project in one statement (moving its
next poll forward, so no other server takes it), asks its remote for its refs (`git ls-remote`),
and turns every new or moved branch head or tag, and every deleted branch, into the push event a
forge would have sent, through the same triggers. Each update is claimed as a delivery
(`poll:<ref>:<sha>`), in the transaction that records its pipelines: several servers polling the
same project fire it once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from circlet.db.engine import Database
from circlet.db.types import utcnow
from circlet.definitions.service import project_in_org
from circlet.hooks import repository as hooks
from circlet.hooks.events import PUSH, ForgeEvent
from circlet.hooks.service import Answer, HookService
from circlet.http.errors import ApiError
from circlet.mirrors.git_mirror import GitError, RepoSource
from circlet.projects.repository import ProjectInOrg

log = logging.getLogger("circlet.hooks.polling")
ROUND_SECONDS = 1.0
# How long a claimed poll is the claimer's: a server that dies mid-poll delays the project this long.
POLL_LEASE = timedelta(minutes=5)
SWEEP_ROUNDS = 3600  # about hourly: forget deliveries old enough never to be redelivered


def ref_events(known: dict[str, str], seen: dict[str, str]) -> list[ForgeEvent]:
    """The push events between two views of a remote's refs: new or moved heads and tags, and
    deleted heads (a deleted tag starts nothing, as with forges)."""
    events = []
    for ref, sha in sorted(seen.items()):
        if known.get(ref) == sha:
            continue
        if ref.startswith("refs/heads/"):
            events.append(ForgeEvent("poll", PUSH, branch=ref[11:], before=known.get(ref), after=sha))
        elif ref.startswith("refs/tags/"):
            events.append(ForgeEvent("poll", PUSH, tag=ref[10:], before=None, after=sha))
    for ref, sha in sorted(known.items()):
        if ref not in seen and ref.startswith("refs/heads/"):
            events.append(ForgeEvent("poll", PUSH, branch=ref[11:], before=sha, deleted=True))
    return events


@dataclass
class Poller:
    database: Database
    service: HookService

    async def run(self) -> None:
        rounds = 0
        while True:
            try:
                while await self.poll_once():
                    pass
                rounds += 1
                if rounds % SWEEP_ROUNDS == 0:
                    async with self.database.writing() as session:
                        await self.service.forget_old_deliveries(session)
            except asyncio.CancelledError:
                raise
            except Exception:  # a round's failure is logged; the next round tries again
                log.exception("polling round failed")
            await asyncio.sleep(ROUND_SECONDS)

    async def poll_once(self) -> bool:
        """Poll one due project; False when none is due."""
        async with self.database.writing() as session:
            poll = await hooks.claim_due_poll(session, utcnow(), POLL_LEASE)
            if poll is None:
                return False
            project_id, every, known = poll.project_id, poll.every_seconds, poll.refs
            found = await project_in_org(session, project_id)
        seen = None
        if found is not None and found.project.vcs_url:
            project = found.project
            try:
                seen = await self.service.mirrors.remote_refs(
                    RepoSource(project.id, project.vcs_url, project.repo_set_by_operator)
                )
            except GitError as exc:
                log.warning("polling project %s failed: %s", project.id, exc)
        if found is not None and seen is not None and known is not None:
            for event in ref_events(known, seen):
                await self.fire(found, event)
        async with self.database.writing() as session:
            await hooks.finish_poll(session, project_id, seen, utcnow() + timedelta(seconds=every))
        return True

    async def fire(self, found: ProjectInOrg, event: ForgeEvent) -> None:
        ref = f"refs/heads/{event.branch}" if event.branch is not None else f"refs/tags/{event.tag}"
        delivery = f"poll:{ref}:{event.after or 'deleted:' + str(event.before)}"
        try:
            async with self.database.reading() as session:
                plan = await self.service.plan_event(session, found, "poll", event, delivery)
            if isinstance(plan, Answer):
                return
            built = await self.service.build(plan)
            if isinstance(built, Answer):
                return
            async with self.database.writing() as session:
                created = await self.service.record(session, plan, built)
        except ApiError as exc:  # a ref that cannot be built (gone again, unreachable): the next update may be
            log.warning("polled update %s of project %s not built: %s", ref, found.project.id, exc.message)
            return
        if not isinstance(created, Answer):
            self.service.start(created)


def parse_every(text: str) -> int:
    """``60``, ``60s``, ``5m`` or ``1h`` as seconds; at least 10."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    scale = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    if not number.isdigit() or int(number) * scale < 10:
        raise ValueError(f"not a polling period of at least 10 seconds: {text!r}")
    return int(number) * scale
