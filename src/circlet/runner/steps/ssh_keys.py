"""The ``add_ssh_keys`` step: the project's SSH keys (the task's ``ssh_keys``) installed in the job's
``~/.ssh``, all of them or those whose ``fingerprints`` the step lists.

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

from circlet.runner.context import StepContext, StepOutcome
from circlet.runner.protocol import SshKey

KEY_PREFIX = "id_rsa_"


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
    available = {key.fingerprint: key for key in context.task.ssh_keys}
    listed = context.step.args.get("fingerprints") or []
    wanted = [str(fingerprint).strip() for fingerprint in ([listed] if isinstance(listed, str) else listed)]
    missing = [fingerprint for fingerprint in wanted if fingerprint not in available]
    if missing:
        message = f"add_ssh_keys: this project has no SSH key with fingerprint {', '.join(missing)}"
        await context.output.line(message)
        return StepOutcome("failed", None, message)
    chosen = [available[fingerprint] for fingerprint in wanted] if wanted else context.task.ssh_keys
    if not chosen:
        await context.output.line("add_ssh_keys: this project has no SSH keys; nothing to add")
        return StepOutcome("success", 0)
    ssh_dir = context.dirs.home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    ssh_dir.chmod(0o700)
    for key in chosen:
        write_private(ssh_dir / key_file_name(key.fingerprint), key.private_key)
        await context.output.line(f"Added SSH key {key.fingerprint} as ~/.ssh/{key_file_name(key.fingerprint)}")
    write_config(ssh_dir)
    install_ssh_wrapper(context)
    return StepOutcome("success", 0)


def write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    path.chmod(0o600)


def write_config(ssh_dir: Path) -> None:
    """``~/.ssh/config`` naming every key added so far (an earlier ``add_ssh_keys`` step's too)."""
    identities = "".join(f'  IdentityFile "{path}"\n' for path in sorted(ssh_dir.glob(f"{KEY_PREFIX}*")))
    config = (
        "# Written by circlet's add_ssh_keys step\n"
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
