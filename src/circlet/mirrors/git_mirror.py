"""A bare mirror of each project's repository under ``$CIRCLET_HOME/mirrors/<project id>``, driven by
the real ``git`` CLI in asyncio subprocesses: fetched on trigger, then read at the resolved commit.

A mirror belongs to one project: two projects naming the same URL never share what one of them was
allowed to fetch, and deleting the project deletes its mirror. What a fetch may reach is decided at
fetch time (docs/security.md, "What an organization can reach")."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import re
import shlex
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from circlet.reach.network import IPAddress, NetworkGuard, Refused
from circlet.reach.repo_urls import RepoLocation, RepoRules, parse_location

FETCH_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", "+refs/pull/*:refs/pull/*")
FETCH_TIMEOUT_SECONDS = 120.0
PULL_REF = re.compile(r"^pull/(\d+)/(head|merge)$")
MAX_CACHED_FILES = 256
SAFE_REF = re.compile(r"^[A-Za-z0-9._/@+-]{1,255}$")
# Every git command: no hooks of the mirror run, and no submodule is followed.
SAFE_CONFIG = {"core.hooksPath": "/dev/null", "fetch.recurseSubmodules": "false", "submodule.recurse": "false"}
# Fetches for an organization: none of the server's git configuration, credentials or SSH identities,
# and no redirect to a host the guard did not check.
TENANT_CONFIG = {"http.followRedirects": "false", "credential.helper": ""}
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
class RepoSource:
    """A project's repository as fetched: its URL, and whether the operator set it (then it is fetched
    as the operator would, local paths and the server's own credentials included)."""

    project_id: uuid.UUID
    url: str
    set_by_operator: bool


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    body: str


class GitMirrors:
    def __init__(self, root: Path, rules: RepoRules, guard: NetworkGuard):
        self.root = root
        self.rules = rules
        self.guard = guard
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, asyncio.Task[None]] = {}
        # A file at a commit never changes: the configs of recent commits are kept.
        self._files: dict[tuple[str, str, str], str] = {}
        self._reading: dict[tuple[str, str, str], asyncio.Future[str]] = {}

    def path_for(self, source: RepoSource) -> Path:
        return self.root / str(source.project_id) / (hashlib.sha256(source.url.encode()).hexdigest()[:32] + ".git")

    def remove(self, project_ids: Iterable[uuid.UUID]) -> None:
        """Delete the mirrors of deleted projects (called after the commit that deleted them)."""
        for project_id in project_ids:
            shutil.rmtree(self.root / str(project_id), ignore_errors=True)

    async def fetch(self, source: RepoSource) -> Path:
        """Bring the project's mirror of its URL up to date with a fetch that began after this call.

        Fetches of one mirror are coalesced: while one runs, every caller that arrives joins
        the single fetch queued behind it, so a burst of triggers costs two fetches, not one each.
        """
        path = self.path_for(source)
        key = str(path)
        queued = self._queued.get(key)
        if queued is None:
            queued = self._queued[key] = asyncio.get_running_loop().create_task(self._fetch_after(key, source, path))
        await asyncio.shield(queued)
        return path

    async def _fetch_after(self, key: str, source: RepoSource, path: Path) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            # From here on, callers queue for the next fetch: this one may have started too early.
            self._queued.pop(key, None)
            try:
                # Checked now, not when the URL was saved: settings, symbolic links and DNS change.
                url, env = await self._reach(source, path.parent)
            except Refused as exc:
                raise GitError(f"could not fetch the repository {without_credentials(source.url)}: {exc}") from None
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
                    "--no-recurse-submodules",
                    # A shallow source repository has shallow roots: take them, or its refs are
                    # silently rejected and every branch looks missing.
                    "--update-shallow",
                    "--end-of-options",
                    url,
                    *FETCH_REFSPECS,
                    timeout=FETCH_TIMEOUT_SECONDS,
                    env=env,
                )
            except GitError as exc:
                raise GitError(f"could not fetch the repository {without_credentials(source.url)}: {exc}") from None

    async def _reach(self, source: RepoSource, project_dir: Path) -> tuple[str, dict[str, str]]:
        """The URL to fetch and git's environment: only the location's own transport, and for an
        organization's network location, only addresses the guard allowed (pinned: git connects to
        the address checked here, not to whatever the name resolves to a moment later)."""
        location = parse_location(source.url)
        if location.is_local:
            self.rules.check_local(location, operator=source.set_by_operator)
            return source.url, git_environment({"GIT_ALLOW_PROTOCOL": "file"})
        if source.set_by_operator:
            return source.url, git_environment({"GIT_ALLOW_PROTOCOL": self.rules.transports(location)})
        pinned = (await self.guard.resolve(location.host, location.port))[0]
        env = {
            "GIT_ALLOW_PROTOCOL": self.rules.transports(location),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        config = dict(TENANT_CONFIG)
        url = source.url
        if location.kind in ("https", "http"):  # http: an API project saved before it was refused
            config["http.curloptResolve"] = f"{location.host}:{location.port}:{address_text(pinned)}"
        elif location.kind == "git":
            parts = urlsplit(url)
            url = f"git://{address_text(pinned)}:{location.port}{parts.path}"
        elif location.kind == "ssh":
            env["GIT_SSH_COMMAND"] = ssh_command(location, pinned, project_dir / "known_hosts")
        return url, git_environment(env, config, drop=("SSH_AUTH_SOCK",))

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

    async def commit(self, path: Path, sha: str) -> Commit:
        """The commit ``sha`` names (a tag object's commit for a tag), if the mirror has it; a forge
        event builds the revision it pushed, never the ref's head at fetch time."""
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
            raise UnknownRef(f"invalid revision {sha!r}")
        try:
            text = await _git(path, "log", "-1", "--format=%H%x00%s%x00%b", f"{sha}^{{commit}}", "--")
        except GitError:
            raise UnknownRef(f"revision {sha} not found in the project's repository") from None
        found, subject, body = (text.split("\x00", 2) + ["", ""])[:3]
        return Commit(found.strip(), subject.strip(), body.strip())

    async def remote_refs(self, source: RepoSource) -> dict[str, str]:
        """The branches and tags of the project's remote (``git ls-remote``, under the same reach
        rules as a fetch): ``refs/heads/x`` and ``refs/tags/y`` (peeled to its commit) to shas."""
        path = self.path_for(source)
        try:
            url, env = await self._reach(source, path.parent)
        except Refused as exc:
            raise GitError(f"could not read the repository {without_credentials(source.url)}: {exc}") from None
        try:
            text = await _git(
                None, "ls-remote", "--heads", "--tags", "--end-of-options", url, timeout=FETCH_TIMEOUT_SECONDS, env=env
            )
        except GitError as exc:
            raise GitError(f"could not read the repository {without_credentials(source.url)}: {exc}") from None
        refs: dict[str, str] = {}
        for line in text.splitlines():
            sha, _, ref = line.partition("\t")
            if ref.endswith("^{}"):  # an annotated tag, peeled: its commit wins over the tag object
                refs[ref[:-3]] = sha
            elif ref not in refs:
                refs[ref] = sha
        return refs

    async def read_file(self, path: Path, sha: str, file_path: str) -> str:
        """A file at a commit; concurrent reads of one file share one ``git show`` (a burst of
        pipelines at one commit reads its config once)."""
        key = (str(path), sha, file_path)
        cached = self._files.get(key)
        if cached is not None:
            return cached
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._read_file(key, path, sha, file_path))
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)

    async def _read_file(self, key: tuple[str, str, str], path: Path, sha: str, file_path: str) -> str:
        try:
            text = await _git(path, "show", f"{sha}:{file_path}")
        except GitError:
            raise MissingFile(f"{file_path} not found at commit {sha}") from None
        if len(self._files) >= MAX_CACHED_FILES:
            self._files.pop(next(iter(self._files)))
        self._files[key] = text
        return text


def address_text(address: IPAddress) -> str:
    return f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)


def ssh_command(location: RepoLocation, pinned: IPAddress, known_hosts: Path) -> str:
    """OpenSSH with none of the server's configuration, keys or agent, connecting to the checked
    address while it verifies the host key under the host's name."""
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "IdentityFile": os.devnull,
        "IdentityAgent": "none",
        "HostName": str(pinned),
        "HostKeyAlias": location.host,
        "StrictHostKeyChecking": "accept-new",
        "UserKnownHostsFile": str(known_hosts),
    }
    return shlex.join(["ssh", "-F", os.devnull, *(f"-o{name}={value}" for name, value in options.items())])


def git_environment(
    overrides: Mapping[str, str] | None = None, config: Mapping[str, str] | None = None, drop: Iterable[str] = ()
) -> dict[str, str]:
    """git's environment: no prompts, ``SAFE_CONFIG`` and ``config`` (given through the environment,
    so no option is ever read from a URL), and by default only the transports a repository URL
    should use (never ``ext::`` or ``fd::``)."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        **(overrides or {}),
    }
    for name in drop:
        env.pop(name, None)
    pairs = {**SAFE_CONFIG, **(config or {})}
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for index, (key, value) in enumerate(pairs.items()):
        env[f"GIT_CONFIG_KEY_{index}"], env[f"GIT_CONFIG_VALUE_{index}"] = key, value
    return env


async def _git(cwd: Path | None, *args: str, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> str:
    env = env if env is not None else git_environment()
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
