"""The ``add_ssh_keys`` step: the project's SSH keys (the task's ``ssh_keys``) installed in the job's
``~/.ssh``, all of them or those whose ``fingerprints`` the step lists (by a key's fingerprint or any
of its ``aliases``: CircleCI takes both the MD5 and the ``SHA256:`` form), each as
``~/.ssh/id_rsa_<the fingerprint as named>``. ``~/.ssh/config`` offers a key with ``hostnames`` only
to those hosts (a ``Host <hostname>`` entry) and every other key to every host (``Host *``).

ssh reads the config of the user's home in the password database, not ``$HOME``; the job's home is
the task's own, so the step also puts an ``ssh`` first on the job's ``PATH`` that passes
``-F $HOME/.ssh/config`` to the real one (git's ``ssh`` included)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path

from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.protocol import SshKey

KEY_PREFIX = "id_rsa_"
# What may follow ``Host`` for a key's hostname: one ssh pattern, nothing that ends the line.
HOST_PATTERN = re.compile(r"^[A-Za-z0-9._:*?-]{1,255}$")


def key_file_name(fingerprint: str) -> str:
    """``id_rsa_`` and the fingerprint without colons (as CircleCI names an MD5 one), other
    characters a file name should not hold replaced by ``_``."""
    return KEY_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", fingerprint.replace(":", ""))


def key_secrets(keys: Iterable[SshKey]) -> list[str]:
    """What output must never show of the keys: each line of their bodies (the ``-----BEGIN``/``END``
    lines are no secret). Line by line rather than whole keys, so a key printed in part is masked too
    and the masking holds back a line's length of output, not a key's."""
    return [
        line.strip()
        for key in keys
        for line in key.private_key.splitlines()
        if line.strip() and not line.startswith("-----")
    ]


async def add_ssh_keys(context: StepContext) -> StepOutcome:
    available: dict[str, SshKey] = {}
    for key in context.task.ssh_keys:
        for name in (key.fingerprint, *key.aliases):
            available.setdefault(name, key)
    listed = context.step.args.get("fingerprints") or []
    wanted = [str(fingerprint).strip() for fingerprint in ([listed] if isinstance(listed, str) else listed)]
    wanted = list(dict.fromkeys(wanted))
    missing = [fingerprint for fingerprint in wanted if fingerprint not in available]
    if missing:
        message = f"add_ssh_keys: this project has no SSH key with fingerprint {', '.join(missing)}"
        await context.output.line(message)
        return StepOutcome("failed", None, message)
    # Each key under the name the step gave it, so the file is ``id_rsa_<what the config says>``.
    chosen = (
        [(fingerprint, available[fingerprint]) for fingerprint in wanted]
        if wanted
        else [(key.fingerprint, key) for key in context.task.ssh_keys]
    )
    if not chosen:
        await context.output.line("add_ssh_keys: this project has no SSH keys; nothing to add")
        return StepOutcome("success", 0)
    ssh_dir = context.dirs.home / ".ssh"
    await context.dirs.job_files(write_keys, ssh_dir, chosen, context.task.ssh_keys)
    for name, key in chosen:
        hosts = f" for {', '.join(key.hostnames)}" if key.hostnames else ""
        await context.output.line(f"Added SSH key {name} as ~/.ssh/{key_file_name(name)}{hosts}")
    await context.dirs.job_files(install_ssh_wrapper, context)
    return StepOutcome("success", 0)


def write_keys(ssh_dir: Path, chosen: list[tuple[str, SshKey]], keys: Iterable[SshKey]) -> None:
    """The keys and the config (as the job's user when there is one: its home, its links)."""
    ssh_dir.mkdir(exist_ok=True)
    ssh_dir.chmod(0o700)
    for name, key in chosen:
        write_private(ssh_dir / key_file_name(name), key.private_key)
    write_config(ssh_dir, keys)


def write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    path.chmod(0o600)


def write_config(ssh_dir: Path, keys: Iterable[SshKey] = ()) -> None:
    """``~/.ssh/config`` naming every key added so far (an earlier ``add_ssh_keys`` step's too): a
    ``Host <hostname>`` entry per hostname the task's keys are for, listing those keys' files, then
    ``Host *`` with every other file. ssh gathers ``IdentityFile`` from every entry that matches, so
    a host's own keys are tried first and the keys for every host after them.

    Which hostnames a file's key is for comes from the task's keys, not the files, so the config is
    rebuilt whole from what is on disk whichever step wrote it."""
    # File name -> the hosts its key is for; a file not in it (a key for every host, or a file of
    # the job's own) goes under ``Host *``.
    hosts_of: dict[str, tuple[str, ...]] = {}
    for key in keys:
        if not key.hostnames:
            continue
        # A hostname that could break out of its ``Host`` line is dropped (the server never sends
        # one); a key left with none is offered to no host rather than to every host.
        hosts = tuple(host for host in key.hostnames if HOST_PATTERN.match(host))
        for name in (key.fingerprint, *key.aliases):
            hosts_of[key_file_name(name)] = hosts
    by_host: dict[str, list[Path]] = {}
    everywhere: list[Path] = []
    for path in sorted(ssh_dir.glob(f"{KEY_PREFIX}*")):
        if path.name not in hosts_of:
            everywhere.append(path)
        for host in hosts_of.get(path.name, ()):
            by_host.setdefault(host, []).append(path)
    scoped = "".join(
        f"Host {host}\n" + "".join(f'  IdentityFile "{path}"\n' for path in paths)
        for host, paths in sorted(by_host.items())
    )
    identities = "".join(f'  IdentityFile "{path}"\n' for path in everywhere)
    config = (
        "# Written by circlet's add_ssh_keys step\n"
        f"{scoped}"
        "Host *\n"
        f"{identities}"
        "  StrictHostKeyChecking accept-new\n"
        f'  UserKnownHostsFile "{ssh_dir / "known_hosts"}"\n'
    )
    write_private(ssh_dir / "config", config)


def install_ssh_wrapper(context: StepContext) -> None:
    """An ``ssh`` in the task's ``bin/`` that reads the job's ``~/.ssh/config`` (when there is a real ssh)."""
    path = context.environment.get("PATH", os.defpath).split(os.pathsep)
    search_path = os.pathsep.join(entry for entry in path if entry != str(context.dirs.bin))
    real_ssh = shutil.which("ssh", path=search_path)
    if real_ssh is None:
        return
    wrapper = context.dirs.bin / "ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        '[ -f "$HOME/.ssh/config" ] && exec ' + shlex.quote(real_ssh) + ' -F "$HOME/.ssh/config" "$@"\n'
        "exec " + shlex.quote(real_ssh) + ' "$@"\n'
    )
    wrapper.chmod(0o755)
