"""The ``run`` step: a command in a shell, in its own process group (on the host, or inside the
job's primary container)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from circlet.agent.containers import TaskContainers, environment_script
from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.durations import parse_duration
from circlet.agent.process import ProcessResult, run_process

DEFAULT_NO_OUTPUT_TIMEOUT = "10m"
SOURCE_BASH_ENV = '[ -f "$BASH_ENV" ] && . "$BASH_ENV"\n'


@functools.cache
def default_shell() -> tuple[tuple[str, ...], bool]:
    """CircleCI's default: ``/bin/bash -eo pipefail``, else ``/bin/sh -eo pipefail`` (``-e`` alone
    where that sh has no pipefail). The second value says whether the script must source
    ``$BASH_ENV`` itself (bash does it for a non-interactive shell; sh does not)."""
    bash = "/bin/bash" if shutil.which("/bin/bash") else shutil.which("bash")
    if bash:
        return (bash, "-eo", "pipefail"), False
    probe = subprocess.run(["/bin/sh", "-o", "pipefail", "-c", ":"], capture_output=True, check=False)
    return (("/bin/sh", "-eo", "pipefail") if probe.returncode == 0 else ("/bin/sh", "-e")), True


def write_script(path: Path, text: str) -> None:
    """Replaces what is there (a link the job put in its place is removed, not followed)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


async def run(context: StepContext) -> StepOutcome:
    args = context.step.args
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        await context.output.line("circlet runner: this run step has no command")
        return StepOutcome("failed", None, f"step {context.step.name!r} has no command")
    timeout_text = str(args.get("no_output_timeout") or DEFAULT_NO_OUTPUT_TIMEOUT)
    try:
        timeout = parse_duration(timeout_text)
    except ValueError as exc:
        await context.output.line(f"circlet runner: no_output_timeout: {exc}")
        return StepOutcome("failed", None, f"step {context.step.name!r}: {exc}")
    containers = context.containers
    shell_text = args.get("shell") or context.task.executor.shell
    if shell_text:
        shell, prelude = shlex.split(str(shell_text)), ""
    else:
        if containers is not None:
            fallback, sources = containers.shell.shell, containers.shell.sources_bash_env
        else:
            fallback, sources = default_shell()
        shell, prelude = list(fallback), SOURCE_BASH_ENV if sources else ""
    script = context.dirs.data / f"step-{context.index}.sh"
    await context.dirs.job_files(write_script, script, prelude + command + ("" if command.endswith("\n") else "\n"))
    cwd = context.resolve(args.get("working_directory"))
    context.dirs.make_dir(cwd)
    environment = dict(context.environment)
    environment.update({str(k): "" if v is None else str(v) for k, v in (args.get("environment") or {}).items()})
    if containers is None:
        result = await context.run([*shell, str(script)], cwd=cwd, env=environment, no_output_timeout=timeout)
    else:
        result = await run_in_container(context, containers, [*shell, str(script)], cwd, environment, timeout)
    if result.timed_out:
        await context.output.line(f"\nToo long with no output (exceeded {timeout_text})")
    return StepOutcome.of_process(result, f"step {context.step.name!r}", timeout_text)


async def run_in_container(
    context: StepContext,
    containers: TaskContainers,
    argv: list[str],
    cwd: Path,
    environment: dict[str, str],
    timeout: float,
) -> ProcessResult:
    """``argv`` in the primary container through the engine's ``exec``. A kill (cancel, timeout, end
    of the job) signals the step's process group inside the container, not only the ``exec`` client."""
    chowned = await containers.give_files_to_user()
    if chowned is not None and not chowned.ok:
        await context.output.line(
            f"circlet runner: warning: could not give the job's files to user {containers.user}: {chowned.last_line()}"
        )
    pid_file = context.dirs.data / f"step-{context.index}.pid"
    pid_file.unlink(missing_ok=True)

    async def signal_step(signum: signal.Signals) -> None:
        await containers.signal_step(pid_file, signum)

    return await run_process(
        containers.exec_argv(pid_file, cwd, argv),
        cwd=context.dirs.root,
        env=containers.engine.environment,
        groups=context.groups,
        on_output=context.output.write,
        no_output_timeout=timeout,
        signal_remote=signal_step,
        stdin=environment_script(environment),
    )
