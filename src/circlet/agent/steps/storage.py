"""The storage steps: ``save_cache``, ``restore_cache``, ``persist_to_workspace``, ``attach_workspace``,
``store_artifacts`` and ``store_test_results``. Archives are made in the task's data directory and
streamed from there, so no step holds a file in memory; the server keeps the bytes (docs/runner.md)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from circlet.agent.context import StepContext, StepOutcome, TaskStorage
from circlet.agent.protocol import Gone, ProtocolError
from circlet.agent.steps.archives import ArchiveError, beneath, create, expand, extract, readable_entry
from circlet.agent.steps.cache_keys import TemplateError, render_key

Handler = Callable[[StepContext, TaskStorage], Awaitable[StepOutcome]]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value if item is not None and str(item)]
    return []


def _failed(what: str, reason: str) -> StepOutcome:
    return StepOutcome("failed", None, f"{what}: {reason}")


@contextlib.asynccontextmanager
async def _scratch(context: StepContext) -> AsyncIterator[Path]:
    """Where an archive is made or downloaded. With a job user, the task's root (root's, where the
    job cannot create or replace an entry); for a confined job, a private directory outside the task's:
    the agent uploads and unpacks this file as itself, so a job that swapped it for a link to the
    server's key file would have that uploaded as its cache."""
    if context.dirs.within is not None:
        # A confined job (a container) may write anywhere in its task directory, the root included.
        with tempfile.TemporaryDirectory(prefix="circlet-archive-") as private:
            yield Path(private) / "archive.tar"
        return
    directory = context.dirs.data if context.dirs.owner is None else context.dirs.root
    path = directory / f"archive-{uuid.uuid4().hex}.tar"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def _opened_as_job(context: StepContext, file: Path) -> AsyncIterator[Path]:
    """``file`` opened with the job's permissions, as a path to that open file: a link the job
    planted (to the server's key file, say) cannot make the agent upload what the job cannot read."""
    if context.dirs.owner is None and context.dirs.within is None:
        yield file
        return
    descriptor = await context.dirs.job_files(os.open, file, os.O_RDONLY | os.O_NONBLOCK)
    try:
        beneath(descriptor, context.dirs.within, file)
        yield Path(f"/proc/self/fd/{descriptor}")
    finally:
        os.close(descriptor)


def _storage_step(what: str, handler: Handler) -> Callable[[StepContext], Awaitable[StepOutcome]]:
    """Runs ``handler`` with the task's storage; refusals become a failed step with a clear line."""

    async def step(context: StepContext) -> StepOutcome:
        if context.storage is None:
            await context.output.line(f"circlet runner: {what} needs the server's storage, which this runner lacks")
            return _failed(what, "no server storage")
        try:
            return await handler(context, context.storage)
        except (ArchiveError, TemplateError, ProtocolError) as exc:
            await context.output.line(f"{what}: {exc}")
            return _failed(what, str(exc))

    return step


# -- caches ---------------------------------------------------------------------------------------


async def _render(context: StepContext, template: str) -> str:
    """The key, its ``checksum`` files read as the job (a key is the job's to see: the checksum of a
    file only root may read would tell it something of that file)."""
    return await context.dirs.job_files(render_key, template, context.environment, context.resolve)


def _task_root(context: StepContext) -> Path:
    return Path(os.path.abspath(context.dirs.root))


def _cache_member(context: StepContext, given: str) -> Path:
    """What a ``save_cache`` path names: under the home, the path the home's entry has; elsewhere
    (``/opt/deps``, ``~/../other``) the absolute path, ``..`` resolved, links as they are."""
    path = context.resolve(given)
    home = context.dirs.home.resolve()
    try:
        return context.dirs.home / path.resolve().relative_to(home)
    except ValueError:
        return Path(os.path.abspath(path))


def _cache_members(context: StepContext, givens: list[str]) -> list[tuple[str, Path | None]]:
    """Each given path with what it names, or None where the job cannot see anything (run as the job:
    a path only root may reach is as missing, as it is for the job itself)."""
    found: list[tuple[str, Path | None]] = []
    for given in givens:
        member = _cache_member(context, given)
        found.append((given, member if readable_entry(member) else None))
    return found


async def _report_unreadable(context: StepContext, unreadable: list[str]) -> None:
    for path in unreadable:
        await context.output.line(f"Warning: could not read {path}: permission denied; not cached")


async def _save_cache(context: StepContext, storage: TaskStorage) -> StepOutcome:
    template = str(context.step.args.get("key") or "")
    if not template:
        raise ArchiveError("a key is required")
    key = await _render(context, template)
    if await storage.cache_exists(key):
        await context.output.line(f"Skipping cache generation, cache already exists for key: {key}")
        return StepOutcome("success", 0)
    members: list[Path] = []
    givens = _strings(context.step.args.get("paths"))
    for given, member in await context.dirs.job_files(_cache_members, context, givens):
        if member in (context.dirs.home, Path("/")):
            await context.output.line(f"Warning: {given} names the whole home or file system; not cached")
        elif member is None:
            await context.output.line(f"Warning: could not find {given}; not cached")
        else:
            members.append(member)
    if not members:  # an empty cache would make every later save of this key a skip
        await context.output.line(f"No cache is saved for key: {key}: none of its paths exist")
        return StepOutcome("success", 0)
    async with _scratch(context) as archive:
        await context.output.line("Creating cache archive...")
        archived = await create(
            archive,
            context.dirs.home,
            members,
            movable=_task_root(context),
            thread=context.dirs.job_files,
            within=context.dirs.within,
        )
        await _report_unreadable(context, archived.unreadable)
        if not archived.count:
            await context.output.line(f"No cache is saved for key: {key}: none of its paths could be read")
            return StepOutcome("success", 0)
        size = archive.stat().st_size
        await context.output.line(f"Uploading cache archive ({size} bytes, {archived.count} paths)...")
        if not await storage.upload_cache(key, archive):
            await context.output.line(f"Skipping cache generation, cache already exists for key: {key}")
            return StepOutcome("success", 0)
    await context.output.line(f"Stored Cache to {key}")
    return StepOutcome("success", 0)


async def _restore_cache(context: StepContext, storage: TaskStorage) -> StepOutcome:
    templates = _strings(context.step.args.get("keys")) or _strings(context.step.args.get("key"))
    if not templates:
        raise ArchiveError("key or keys is required")
    keys = [await _render(context, template) for template in templates]
    found = await storage.find_cache(keys)
    if found is None:
        await context.output.line("No cache is found for key: " + " ".join(keys))
        return StepOutcome("success", 0)
    await context.output.line(f"Found a cache at {found}")
    async with _scratch(context) as archive:
        try:
            await storage.download_cache(found, archive)
        except Gone:  # expired, and its bytes swept, since it was found: a miss, as if never found
            await context.output.line(f"The cache {found} expired before it could be restored; no cache is restored")
            return StepOutcome("success", 0)
        count = await extract(
            archive,
            context.dirs.home,
            movable=_task_root(context),
            thread=context.dirs.job_files,
            within=context.dirs.within,
        )
    await context.output.line(f"Restored {count} entries of cache {found} into {context.dirs.home}")
    return StepOutcome("success", 0)


# -- workspaces -----------------------------------------------------------------------------------


def _workspace_members(root: Path, patterns: list[str]) -> list[Path]:
    members: list[Path] = []
    for pattern in patterns:
        found = expand(root, pattern)
        if not found:
            raise ArchiveError(f"could not find {pattern} under {root}")
        members.extend(found)
    return members


async def _persist_to_workspace(context: StepContext, storage: TaskStorage) -> StepOutcome:
    root_arg = context.step.args.get("root")
    if not root_arg:
        raise ArchiveError("root is required")
    root = context.resolve(root_arg)
    patterns = _strings(context.step.args.get("paths"))
    members = await context.dirs.job_files(_workspace_members, root, patterns)
    async with _scratch(context) as archive:
        archived = await create(archive, root, members, thread=context.dirs.job_files, within=context.dirs.within)
        for path in archived.unreadable:
            if Path(path) in members:  # as a path that matches nothing: the step fails
                raise ArchiveError(f"could not read {Path(path).relative_to(root)} under {root}: permission denied")
            await context.output.line(f"Warning: could not read {path}: permission denied; not persisted")
        await storage.upload_layer(archive)
    await context.output.line(f"Persisted {archived.count} paths from {root} to the workspace")
    return StepOutcome("success", 0)


async def _attach_workspace(context: StepContext, storage: TaskStorage) -> StepOutcome:
    at_arg = context.step.args.get("at")
    if not at_arg:
        raise ArchiveError("at is required")
    target = context.resolve(at_arg)
    layers = await storage.workspace_layers()
    for layer in layers:
        async with _scratch(context) as archive:
            await storage.download_layer(layer, archive)
            await extract(archive, target, thread=context.dirs.job_files, within=context.dirs.within)
    await context.output.line(f"Attached {len(layers)} workspace layers at {target}")
    return StepOutcome("success", 0)


# -- artifacts and test results -------------------------------------------------------------------


def _destination(value: str) -> str:
    parts = [part for part in value.replace("\\", "/").split("/") if part not in ("", ".", "~")]
    if not parts or ".." in parts:
        raise ArchiveError(f"destination {value!r} must name a path without '..'")
    return "/".join(parts)


def _files(path: Path, suffix: str = "") -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffix))
    return []


async def _store_artifacts(context: StepContext, storage: TaskStorage) -> StepOutcome:
    given = str(context.step.args.get("path") or "")
    if not given:
        raise ArchiveError("path is required")
    source = context.resolve(given)
    prefix = _destination(str(context.step.args.get("destination") or given))
    files = await context.dirs.job_files(_files, source)
    if not files:
        await context.output.line(f"No artifact files found at {given}")
    for file in files:
        name = prefix if file == source else f"{prefix}/{file.relative_to(source).as_posix()}"
        async with _opened_as_job(context, file) as readable:
            await storage.upload_artifact(name, readable)
        await context.output.line(f"Uploaded {name}")
    return StepOutcome("success", 0)


async def _store_test_results(context: StepContext, storage: TaskStorage) -> StepOutcome:
    given = str(context.step.args.get("path") or "")
    if not given:
        raise ArchiveError("path is required")
    root = context.resolve(given)
    files = await context.dirs.job_files(_files, root, ".xml")
    if not files:
        await context.output.line(f"No test results found at {given}")
    for file in files:
        relative = file.relative_to(root) if file != root else Path(file.name)
        source = relative.parts[0] if len(relative.parts) > 1 else root.name
        try:
            async with _opened_as_job(context, file) as readable:
                count = await storage.upload_test_results(source, readable)
        except ProtocolError as exc:  # as CircleCI: a file it cannot read does not fail the step
            await context.output.line(f"Error uploading {relative}: {exc}")
            continue
        await context.output.line(f"Uploaded {count} test results from {relative}")
    return StepOutcome("success", 0)


save_cache = _storage_step("save_cache", _save_cache)
restore_cache = _storage_step("restore_cache", _restore_cache)
persist_to_workspace = _storage_step("persist_to_workspace", _persist_to_workspace)
attach_workspace = _storage_step("attach_workspace", _attach_workspace)
store_artifacts = _storage_step("store_artifacts", _store_artifacts)
store_test_results = _storage_step("store_test_results", _store_test_results)
