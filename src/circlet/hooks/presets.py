"""Which events a trigger's `event_preset` accepts, and what a pipeline of an accepted event
builds: pure functions (docs/compatibility.md, "Forge events and trigger presets").

A trigger without a preset is `all-pushes`, the preset of the trigger CircleCI creates with a
project. Forked pull requests and ref deletions never fire, except deletions for
`only-branch-delete`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from circlet.definitions.schemas import EventPreset
from circlet.hooks.events import PULL_REQUEST, PUSH, ForgeEvent

PRESETS: tuple[str, ...] = get_args(EventPreset)
DEFAULT_PRESET = "all-pushes"
BUILT_PR_ACTIONS = frozenset({"opened", "synchronize", "reopened"})


@dataclass(frozen=True)
class Target:
    """What a fired trigger builds: a branch or a tag at a revision (None: the ref's head when the
    mirror is fetched, for a closed pull request's base branch), and the revision before it."""

    branch: str | None
    tag: str | None
    revision: str | None
    base_revision: str | None


def accepts(preset: str, event: ForgeEvent, default_branch: str) -> bool:
    preset = preset or DEFAULT_PRESET
    if event.name == PUSH:
        return _accepts_push(preset, event, default_branch)
    pull = event.pull_request
    if event.name != PULL_REQUEST or pull is None or pull.forked:
        return False
    if preset == "only-build-prs":
        return pull.action in BUILT_PR_ACTIONS
    if preset == "only-open-prs":
        return pull.action in ("opened", "reopened")
    if preset == "only-labeled-prs":
        return pull.action == "labeled"
    if preset == "only-merged-prs":
        return pull.action == "closed" and pull.merged
    if preset == "only-ready-for-review-prs":
        return pull.action == "ready_for_review"
    if preset == "only-build-pushes-to-non-draft-prs":
        return not pull.draft and pull.action in BUILT_PR_ACTIONS | {"ready_for_review"}
    if preset == "only-merged-or-closed-prs":
        return pull.action == "closed"
    return False


def _accepts_push(preset: str, event: ForgeEvent, default_branch: str) -> bool:
    if event.deleted:
        return preset == "only-branch-delete" and event.branch is not None
    if preset == "all-pushes":
        return True
    if preset == "only-tags":
        return event.tag is not None
    if preset in ("default-branch-pushes", "only-build-prs"):
        return event.branch is not None and event.branch == default_branch
    return False


def target(event: ForgeEvent) -> Target:
    """What a pipeline of an accepted event builds."""
    pull = event.pull_request
    if pull is None:
        if event.deleted:  # the branch is gone: its last commit, as the push's `before` names it
            return Target(event.branch, None, event.before, None)
        return Target(event.branch, event.tag, event.after, event.before)
    if pull.action == "closed":  # merged or closed: the base branch, at the merge when there is one
        return Target(pull.base_ref, None, pull.merge_sha, None)
    return Target(pull.head_ref, None, pull.head_sha, pull.base_sha)
