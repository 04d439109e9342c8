"""A bare mirror of each project's repository under ``$CIRCLET_HOME/mirrors``, driven by the real
``git`` CLI in asyncio subprocesses: fetched on trigger, then read at the resolved commit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", "+refs/pull/*:refs/pull/*")
FETCH_TIMEOUT_SECONDS = 120.0
PULL_REF = re.compile(r"^pull/(\d+)/(head|merge)$")
MAX_CACHED_FILES = 256
SAFE_REF = re.compile(r"^[A-Za-z0-9._/@+-]{1,255}$")
# What of git's own words a caller sees: all of them (the cause is rarely on the last line), bounded.
MAX_MESSAGE_CHARS = 4000
CREDENTIALS = (
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]*@", re.IGNORECASE), r"\1"),  # URL userinfo
    (re.compile(r"\b(authorization|proxy-authorization)(\s*[:=]\s*)[^\r\n]*", re.IGNORECASE), r"\1\2[hidden]"),
    (re.compile(r"\b(\w*(?:token|password|passwd|secret)\w*)=[^\s&]+", re.IGNORECASE), r"\1=[hidden]"),
)


class GitError(Exception):
    """A git operation failed; the message is safe to show to the caller."""


class UnknownRef(GitError):
    pass


class MissingFile(GitError):
    pass


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    body: str


class GitMirrors:
    def __init__(self, root: Path):
        self.root = root
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, asyncio.Task[None]] = {}
        # A file at a commit never changes: the configs of recent commits are kept.
        self._files: dict[tuple[str, str, str], str] = {}

    def path_for(self, url: str) -> Path:
        return self.root / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".git")

    async def fetch(self, url: str) -> Path:
        """Bring the mirror of ``url`` up to date with a fetch that began after this call.

        Fetches of one repository are coalesced: while one runs, every caller that arrives joins
        the single fetch queued behind it, so a burst of triggers costs two fetches, not one each.
        """
        if url.startswith("-"):
            raise GitError(f"not a repository URL or path: {url!r}")
        path = self.path_for(url)
        key = str(path)
        queued = self._queued.get(key)
        if queued is None:
            queued = self._queued[key] = asyncio.get_running_loop().create_task(self._fetch_after(key, url, path))
        await asyncio.shield(queued)
        return path

    async def _fetch_after(self, key: str, url: str, path: Path) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # From here on, callers queue for the next fetch: this one may have started too early.
            self._queued.pop(key, None)
            if not (path / "HEAD").exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                await _git(None, "init", "--bare", "--quiet", str(path))
            try:
                await _git(
                    path,
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    # A shallow source repository has shallow roots: take them, or its refs are
                    # silently rejected and every branch looks missing.
                    "--update-shallow",
                    "--end-of-options",
                    url,
                    *FETCH_REFSPECS,
                    timeout=FETCH_TIMEOUT_SECONDS,
                )
            except GitError as exc:
                raise GitError(f"could not fetch the repository {without_credentials(url)}: {exc}") from None

    async def resolve(self, path: Path, *, branch: str | None, tag: str | None) -> Commit:
        """The commit a branch, tag or ``pull/N/head`` names; UnknownRef when there is none."""
        name = tag if tag is not None else branch
        if name is None or not SAFE_REF.match(name) or ".." in name or name.startswith("-"):
            raise UnknownRef(f"invalid ref {name!r}")
        if tag is not None:
            ref = f"refs/tags/{tag}"
        elif PULL_REF.match(name):
            ref = f"refs/{name}"
        else:
            ref = f"refs/heads/{name}"
        try:
            text = await _git(path, "log", "-1", "--format=%H%x00%s%x00%b", ref, "--")
        except GitError:
            kind = "tag" if tag is not None else "branch"
            raise UnknownRef(f"{kind} '{name}' not found in the project's repository") from None
        sha, subject, body = (text.split("\x00", 2) + ["", ""])[:3]
        return Commit(sha.strip(), subject.strip(), body.strip())

    async def read_file(self, path: Path, sha: str, file_path: str) -> str:
        key = (str(path), sha, file_path)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        try:
            text = await _git(path, "show", f"{sha}:{file_path}")
        except GitError:
            raise MissingFile(f"{file_path} not found at commit {sha}") from None
        if len(self._files) >= MAX_CACHED_FILES:
            self._files.pop(next(iter(self._files)))
        self._files[key] = text
        return text


async def _git(cwd: Path | None, *args: str, timeout: float = 30.0) -> str:
    # No prompts, and only the transports a repository URL should use (never `ext::` commands).
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    }
    command = ["git"] + (["--git-dir", str(cwd)] if cwd is not None else []) + list(args)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitError(f"git {args[0]} timed out") from None
    if process.returncode != 0:
        message = without_credentials(err.decode(errors="replace").strip()) or "git failed"
        raise GitError(message if len(message) <= MAX_MESSAGE_CHARS else "..." + message[-MAX_MESSAGE_CHARS:])
    return out.decode(errors="replace")


def without_credentials(text: str) -> str:
    """``text`` with the user and password of URLs, authorization headers and token-like parameters
    taken out: git repeats the URL it was given, credentials included."""
    for pattern, replacement in CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text
