"""The ``checkout`` step: fetch the task's revision into the working directory (or ``path``),
shallow where the remote allows it, else the whole history."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from pathlib import Path

from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.process import run_process

GIT = ["git", "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main"]


def safe_url(url: str) -> str:
    """The URL without any credentials in it, for the log."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)


async def checkout(context: StepContext) -> StepOutcome:
    source = context.task.checkout
    if source is None:
        await context.output.line("circlet runner: this task has no checkout source")
        return StepOutcome("failed", None, "checkout: the task has no checkout source")
    target = context.resolve(context.step.args.get("path"))
    context.dirs.make_dir(target)
    environment = dict(context.environment)
    environment["GIT_TERMINAL_PROMPT"] = "0"
    key_file = None
    if source.ssh_private_key:
        key_file = await context.dirs.job_files(write_key, context.dirs.data, source.ssh_private_key)
        known_hosts = context.dirs.data / "known_hosts"
        environment["GIT_SSH_COMMAND"] = (
            f"ssh -i {shlex.quote(str(key_file))} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
            f" -o UserKnownHostsFile={shlex.quote(str(known_hosts))}"
        )
    url = source.url
    repository = local_repository(url) if context.job_user is not None else None
    if repository is not None:
        url = await copy_for_job(context, repository)
        if not url:
            return StepOutcome("failed", 1, "checkout: the repository could not be read")
    wanted = source.revision or (f"refs/tags/{source.tag}" if source.tag else f"refs/heads/{source.branch or 'main'}")
    await context.output.line(f"Checking out {wanted} of {safe_url(source.url)} into {target}")

    async def git(*args: str) -> bool:
        result = await context.run([*GIT, *args], cwd=target, env=environment)
        return result.exit_code == 0 and not result.killed

    try:
        done = await git("init", "-q") and await git("config", "remote.origin.url", url)
        if done and url != source.url:  # the job's own copy was fetched from; origin is the project's
            done = await git("config", "remote.origin.pushurl", source.url)
        if done and await git("fetch", "-q", "--depth", "1", "origin", wanted):
            revision = "FETCH_HEAD"
        elif done:
            await context.output.line("Shallow fetch not possible; fetching the whole history")
            done = await git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
            revision = source.revision or wanted.replace("refs/heads/", "refs/remotes/origin/")
        if done:
            branch = ["-B", source.branch] if source.branch and not source.tag else []
            done = await git("checkout", "-q", "--force", *branch, revision)
    finally:
        if key_file is not None:
            key_file.unlink(missing_ok=True)
    if context.groups.closed:
        return StepOutcome("canceled", None, "checkout was canceled")
    if not done:
        return StepOutcome("failed", 1, f"checkout of {wanted} failed")
    return StepOutcome("success", 0)


def local_repository(url: str) -> Path | None:
    """The directory a ``file://`` URL or a plain path names; None for a remote URL."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" in url or re.match(r"^[^/]*:", url):  # a scheme, or scp-like user@host:path
        return None
    return Path(url)


async def copy_for_job(context: StepContext, repository: Path) -> str:
    """A local repository the job's user may not be allowed to read (a path on the runner's host,
    in someone's home): the agent copies it as itself into a place of its own (which the job cannot
    have prepared), gives the copy to the job's user and moves it into the job's data directory
    (a rename replaces a link there rather than following it); the job fetches from the copy."""
    staging = context.dirs.source
    result = await run_process(
        [*GIT, "clone", "-q", "--mirror", "--no-hardlinks", "--", str(repository), str(staging)],
        cwd=context.dirs.root.parent,
        env={**context.environment, "GIT_TERMINAL_PROMPT": "0"},
        groups=context.groups,
        on_output=context.output.write,
    )
    if result.exit_code != 0:
        return ""
    await asyncio.to_thread(context.give, staging)
    staging.chmod(0o700)
    copy = context.dirs.data / "source.git"
    try:
        staging.rename(copy)
    except OSError as exc:
        await context.output.line(f"circlet runner: could not place the repository's copy at {copy}: {exc.strerror}")
        return ""
    return str(copy)


def write_key(directory: Path, key: str) -> Path:
    path = directory / "checkout_key"
    path.unlink(missing_ok=True)  # a link the job put here is removed, not followed
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key if key.endswith("\n") else key + "\n")
    return path
