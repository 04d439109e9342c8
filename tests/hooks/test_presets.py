"""Every `event_preset` of the spec with an event it accepts and one it refuses (pure), and the
forges' pull/merge request events read into GitHub's words."""

from __future__ import annotations

import json

import pytest

from circlet.hooks.events import PULL_REQUEST, PUSH, ForgeEvent, PullRequest, parse, verify
from circlet.hooks.presets import PRESETS, accepts, target

SHA = "a" * 40
BASE = "b" * 40
MERGE = "c" * 40


def push(branch: str | None = "feature", tag: str | None = None, *, deleted: bool = False) -> ForgeEvent:
    return ForgeEvent(
        "github", PUSH, branch=branch, tag=tag, before=BASE, after=None if deleted else SHA, deleted=deleted
    )


def pull(action: str, *, draft: bool = False, merged: bool = False, forked: bool = False) -> ForgeEvent:
    pr = PullRequest(
        7, action, draft, merged, "feature", SHA, "main", BASE, MERGE if merged else None, forked, "t", "u"
    )
    return ForgeEvent("github", PULL_REQUEST, pull_request=pr)


CASES = {
    "all-pushes": (push(), push(deleted=True)),
    "only-tags": (push(None, "v1"), push()),
    "default-branch-pushes": (push("main"), push("feature")),
    "only-build-prs": (pull("opened"), pull("closed")),
    "only-open-prs": (pull("reopened"), pull("synchronize")),
    "only-labeled-prs": (pull("labeled"), pull("opened")),
    "only-merged-prs": (pull("closed", merged=True), pull("closed")),
    "only-ready-for-review-prs": (pull("ready_for_review"), pull("opened", draft=True)),
    "only-branch-delete": (push(deleted=True), push()),
    "only-build-pushes-to-non-draft-prs": (pull("synchronize"), pull("synchronize", draft=True)),
    "only-merged-or-closed-prs": (pull("closed"), pull("opened")),
}


def test_every_preset_of_the_spec_is_covered() -> None:
    assert set(CASES) == set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_accepts_its_event_and_refuses_another(preset: str) -> None:
    accepted, refused = CASES[preset]
    assert accepts(preset, accepted, "main")
    assert not accepts(preset, refused, "main")


@pytest.mark.parametrize("preset", [p for p in PRESETS if p.endswith("prs")])
def test_forked_pull_requests_never_fire(preset: str) -> None:
    accepted = CASES[preset][0]
    assert accepted.pull_request is not None
    forked = pull(accepted.pull_request.action, merged=accepted.pull_request.merged, forked=True)
    assert not accepts(preset, forked, "main")


def test_extra_preset_behaviour() -> None:
    assert accepts("only-build-prs", push("main"), "main")  # and the default branch's pushes
    assert not accepts("only-build-prs", push("feature"), "main")
    assert accepts("", push(), "main")  # no preset: all pushes, as CircleCI's first trigger
    assert accepts("all-pushes", push(None, "v2"), "main")
    assert not accepts("default-branch-pushes", push(None, "main"), "main")  # a tag named as the branch


def test_targets() -> None:
    pushed = target(push())
    assert (pushed.branch, pushed.revision, pushed.base_revision) == ("feature", SHA, BASE)
    deleted = target(push(deleted=True))
    assert (deleted.branch, deleted.revision) == ("feature", BASE)  # the deleted branch's last commit
    opened = target(pull("opened"))
    assert (opened.branch, opened.revision, opened.base_revision) == ("feature", SHA, BASE)
    merged = target(pull("closed", merged=True))
    assert (merged.branch, merged.revision) == ("main", MERGE)
    closed = target(pull("closed"))
    assert (closed.branch, closed.revision) == ("main", None)  # the base branch's head


def gitlab_merge_request(action: str, **extra: object) -> ForgeEvent:
    payload = {
        "object_kind": "merge_request",
        "user": {"username": "tanuki"},
        "object_attributes": {
            "iid": 3,
            "action": action,
            "source_branch": "feature",
            "target_branch": "main",
            "source_project_id": 1,
            "target_project_id": 1,
            "last_commit": {"id": SHA},
            "draft": False,
            **extra.pop("attributes", {}),  # type: ignore[dict-item]
        },
        **extra,
    }
    return parse("gitlab", {"x-gitlab-event": "Merge Request Hook"}, json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("action", "extra", "expected"),
    [
        ("open", {}, "opened"),
        ("reopen", {}, "reopened"),
        ("update", {"attributes": {"oldrev": BASE}}, "synchronize"),
        ("update", {"changes": {"labels": {"previous": [], "current": [{"title": "x"}]}}}, "labeled"),
        ("update", {"changes": {"draft": {"previous": True, "current": False}}}, "ready_for_review"),
        ("close", {}, "closed"),
        ("merge", {}, "closed"),
    ],
)
def test_gitlab_merge_request_actions_read_as_github_ones(action: str, extra: dict[str, object], expected: str) -> None:
    event = gitlab_merge_request(action, **extra)
    assert event.pull_request is not None and event.pull_request.action == expected
    assert event.pull_request.merged == (action == "merge")
    assert event.login == "tanuki" and event.pull_request.head_sha == SHA


def test_gitea_pull_request_actions() -> None:
    payload = {
        "action": "synchronized",
        "number": 4,
        "pull_request": {
            "head": {"ref": "f", "sha": SHA, "repo": {"id": 1}},
            "base": {"ref": "main", "sha": BASE, "repo": {"id": 1}},
        },
        "sender": {"login": "gitea-user"},
    }
    event = parse("gitea", {"x-gitea-event": "pull_request"}, json.dumps(payload).encode())
    assert event.pull_request is not None and event.pull_request.action == "synchronize"
    payload["action"] = "label_updated"
    event = parse("gitea", {"x-gitea-event": "pull_request_label"}, json.dumps(payload).encode())
    assert event.pull_request is not None and event.pull_request.action == "labeled"


def test_github_form_encoded_payloads_and_legacy_signatures() -> None:
    body = b"payload=" + json.dumps({"zen": "z"}).encode().replace(b" ", b"+")
    event = parse("github", {"x-github-event": "ping", "content-type": "application/x-www-form-urlencoded"}, body)
    assert event.name == "ping"
    # Only SHA-256 signatures are accepted: the legacy SHA-1 header alone proves nothing.
    assert not verify("github", {"x-hub-signature": "sha1=00"}, b"{}", "s")
