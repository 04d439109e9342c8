"""Forge deliveries, verified and read into one shape (`ForgeEvent`): pure functions, no I/O.

Each forge proves a delivery its own way; every comparison is constant-time. The payload is read
only after its proof holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

FORGES = ("github", "gitlab", "gitea")
ZERO_SHA = "0" * 40
PUSH = "push"
PULL_REQUEST = "pull_request"
PING = "ping"
IGNORED = "ignored"


class BadDelivery(Exception):
    """The delivery is signed but cannot be read (a 400)."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    action: str  # GitHub's words: opened, synchronize, reopened, labeled, ready_for_review, closed, ...
    draft: bool
    merged: bool
    head_ref: str
    head_sha: str
    base_ref: str
    base_sha: str | None
    merge_sha: str | None
    forked: bool
    title: str
    url: str


@dataclass(frozen=True)
class ForgeEvent:
    forge: str
    name: str  # push, pull_request, ping, ignored
    branch: str | None = None
    tag: str | None = None
    before: str | None = None
    after: str | None = None  # the commit pushed (a tag's commit, not its tag object)
    deleted: bool = False
    login: str = ""
    pull_request: PullRequest | None = None
    details: dict[str, Any] = field(default_factory=dict)  # pipeline.event.github.* values
    reason: str = ""  # why an event is ignored

    @property
    def action(self) -> str:
        return self.pull_request.action if self.pull_request else self.name


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(forge: str, headers: dict[str, str], body: bytes, secret: str) -> bool:
    """The forge's proof that ``secret``'s holder sent ``body``; ``headers`` lower-cased."""
    if forge == "gitlab":
        token = headers.get("x-gitlab-token", "")
        return bool(token) and hmac.compare_digest(token.encode(), secret.encode())
    expected = _hex_hmac(secret, body)
    if forge == "gitea":
        for name in ("x-gitea-signature", "x-forgejo-signature", "x-gogs-signature"):
            given = headers.get(name)
            if given:
                return hmac.compare_digest(given.strip().lower().encode(), expected.encode())
    given = headers.get("x-hub-signature-256", "")
    if not given.startswith("sha256="):
        return False
    return hmac.compare_digest(given[7:].strip().lower().encode(), expected.encode())


def delivery_id(forge: str, headers: dict[str, str]) -> str | None:
    names = {
        "github": ("x-github-delivery",),
        "gitlab": ("x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid"),
        "gitea": ("x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery", "x-github-delivery"),
    }[forge]
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value[:200]
    return None


def parse(forge: str, headers: dict[str, str], body: bytes) -> ForgeEvent:
    payload = _payload(headers, body)
    if forge == "github":
        return _github(headers.get("x-github-event", ""), payload)
    if forge == "gitlab":
        return _gitlab(headers.get("x-gitlab-event", ""), payload)
    kind = headers.get("x-gitea-event") or headers.get("x-forgejo-event") or headers.get("x-gogs-event") or ""
    return _gitea(kind, payload)


def _payload(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    try:
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            forms = parse_qs(body.decode(), max_num_fields=16)
            payload = json.loads(forms["payload"][0])
        else:
            payload = json.loads(body)
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        raise BadDelivery("The delivery's body is not a JSON payload.") from None
    if not isinstance(payload, dict):
        raise BadDelivery("The delivery's body is not a JSON object.")
    return payload


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ref_parts(ref: str) -> tuple[str | None, str | None]:
    if ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :], None
    if ref.startswith("refs/tags/"):
        return None, ref[len("refs/tags/") :]
    return None, None


def _sha(value: Any) -> str | None:
    text = _text(value).strip().lower()
    return text if len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text) else None


def _push(forge: str, payload: dict[str, Any], commit: str | None, login: str) -> ForgeEvent:
    ref = _text(payload.get("ref"))
    branch, tag = _ref_parts(ref)
    if branch is None and tag is None:
        return ForgeEvent(forge, IGNORED, reason=f"a push to {ref or 'no ref'} is not a branch or tag")
    before, after = _sha(payload.get("before")), _sha(payload.get("after"))
    deleted = bool(payload.get("deleted")) or after == ZERO_SHA
    head = _dict(payload.get("head_commit"))
    details = {
        "ref": ref,
        "before": before or "",
        "after": after or "",
        "head_commit.id": _text(head.get("id")),
        "head_commit.message": _text(head.get("message")),
        "head_commit.url": _text(head.get("url")),
        "sender.login": login,
        "repository.full_name": _text(_dict(payload.get("repository")).get("full_name")),
    }
    return ForgeEvent(
        forge,
        PUSH,
        branch=branch,
        tag=tag,
        before=None if before == ZERO_SHA else before,
        after=None if deleted else (commit or after),
        deleted=deleted,
        login=login,
        details={name: value for name, value in details.items() if value},
    )


def _github(kind: str, payload: dict[str, Any]) -> ForgeEvent:
    login = _text(_dict(payload.get("sender")).get("login")) or _text(_dict(payload.get("pusher")).get("name"))
    if kind == "ping":
        return ForgeEvent("github", PING)
    if kind == "push":
        ref_is_tag = _text(payload.get("ref")).startswith("refs/tags/")
        head = _sha(_dict(payload.get("head_commit")).get("id"))
        return _push("github", payload, head if ref_is_tag else None, login)
    if kind == "pull_request":
        return _github_pull_request("github", payload, login)
    return ForgeEvent("github", IGNORED, reason=f"the {kind or 'unnamed'} event starts no pipeline")


def _github_pull_request(forge: str, payload: dict[str, Any], login: str) -> ForgeEvent:
    pr = _dict(payload.get("pull_request"))
    head, base = _dict(pr.get("head")), _dict(pr.get("base"))
    head_repo, base_repo = _dict(head.get("repo")), _dict(base.get("repo"))
    forked = bool(head_repo) and head_repo.get("id") != base_repo.get("id")
    action = _text(payload.get("action"))
    action = {"synchronized": "synchronize", "label_updated": "labeled"}.get(action, action)
    number = payload.get("number", pr.get("number"))
    head_sha = _sha(head.get("sha"))
    if not isinstance(number, int) or head_sha is None or not _text(head.get("ref")):
        raise BadDelivery("The pull request event has no number, head ref or head commit.")
    pull = PullRequest(
        number=number,
        action=action,
        draft=bool(pr.get("draft")),
        merged=bool(pr.get("merged")),
        head_ref=_text(head.get("ref")),
        head_sha=head_sha,
        base_ref=_text(base.get("ref")),
        base_sha=_sha(base.get("sha")),
        merge_sha=_sha(pr.get("merge_commit_sha")) if pr.get("merged") else None,
        forked=forked,
        title=_text(pr.get("title")),
        url=_text(pr.get("html_url")),
    )
    return ForgeEvent(forge, PULL_REQUEST, login=login, pull_request=pull, details=_pr_details(pull, login))


def _pr_details(pull: PullRequest, login: str) -> dict[str, Any]:
    details: dict[str, Any] = {
        "action": pull.action,
        "number": pull.number,
        "pull_request.number": pull.number,
        "pull_request.draft": pull.draft,
        "pull_request.merged": pull.merged,
        "pull_request.head.ref": pull.head_ref,
        "pull_request.head.sha": pull.head_sha,
        "pull_request.base.ref": pull.base_ref,
        "pull_request.base.sha": pull.base_sha or "",
        "pull_request.title": pull.title,
        "pull_request.html_url": pull.url,
        "sender.login": login,
    }
    return {name: value for name, value in details.items() if value != ""}


def _gitlab(kind: str, payload: dict[str, Any]) -> ForgeEvent:
    login = _text(payload.get("user_username")) or _text(_dict(payload.get("user")).get("username"))
    if kind in ("Push Hook", "Tag Push Hook"):
        return _push("gitlab", payload, _sha(payload.get("checkout_sha")), login)
    if kind == "Merge Request Hook":
        return _gitlab_merge_request(payload, login)
    return ForgeEvent("gitlab", IGNORED, reason=f"the {kind or 'unnamed'} event starts no pipeline")


def _gitlab_merge_request(payload: dict[str, Any], login: str) -> ForgeEvent:
    mr = _dict(payload.get("object_attributes"))
    changes = _dict(payload.get("changes"))
    action = _text(mr.get("action"))
    draft_change = _dict(changes.get("draft") or changes.get("work_in_progress"))
    if action == "update" and mr.get("oldrev"):
        action = "synchronize"
    elif action == "update" and draft_change.get("previous") is True and draft_change.get("current") is False:
        action = "ready_for_review"
    elif action == "update" and "labels" in changes:
        action = "labeled"
    else:
        action = {"open": "opened", "reopen": "reopened", "close": "closed", "merge": "closed"}.get(action, action)
    merged = _text(mr.get("action")) == "merge" or mr.get("state") == "merged"
    head_sha = _sha(_dict(mr.get("last_commit")).get("id"))
    number = mr.get("iid")
    if not isinstance(number, int) or head_sha is None or not _text(mr.get("source_branch")):
        raise BadDelivery("The merge request event has no iid, source branch or last commit.")
    pull = PullRequest(
        number=number,
        action=action,
        draft=bool(mr.get("draft", mr.get("work_in_progress"))),
        merged=merged,
        head_ref=_text(mr.get("source_branch")),
        head_sha=head_sha,
        base_ref=_text(mr.get("target_branch")),
        base_sha=None,
        merge_sha=_sha(mr.get("merge_commit_sha")) if merged else None,
        forked=mr.get("source_project_id") != mr.get("target_project_id"),
        title=_text(mr.get("title")),
        url=_text(mr.get("url")),
    )
    return ForgeEvent("gitlab", PULL_REQUEST, login=login, pull_request=pull, details=_pr_details(pull, login))


def _gitea(kind: str, payload: dict[str, Any]) -> ForgeEvent:
    sender = _dict(payload.get("sender"))
    pusher = _dict(payload.get("pusher"))
    login = _text(sender.get("login")) or _text(pusher.get("login")) or _text(pusher.get("username"))
    if kind == "push":
        ref_is_tag = _text(payload.get("ref")).startswith("refs/tags/")
        head = _sha(_dict(payload.get("head_commit")).get("id"))
        return _push("gitea", payload, head if ref_is_tag else None, login)
    if kind.startswith("pull_request") and isinstance(payload.get("pull_request"), dict):
        return _github_pull_request("gitea", payload, login)
    return ForgeEvent("gitea", IGNORED, reason=f"the {kind or 'unnamed'} event starts no pipeline")
