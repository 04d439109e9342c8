"""The ``run`` step: a command in a shell, run by the task's backend (on the host, or inside the
job's primary container)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from circlet.agent.backends import StepCommand
from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.durations import parse_duration

DEFAULT_NO_OUTPUT_TIMEOUT = "10m"
SOURCE_BASH_ENV = '[ -f "$BASH_ENV" ] && . "$BASH_ENV"\n'


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
    shell_text = args.get("shell") or context.task.executor.shell
    if shell_text:
        shell, prelude = shlex.split(str(shell_text)), ""
    else:
        default = context.backend.default_shell()
        shell, prelude = list(default.argv), SOURCE_BASH_ENV if default.sources_bash_env else ""
    script = context.dirs.data / f"step-{context.index}.sh"
    await context.dirs.job_files(write_script, script, prelude + command + ("" if command.endswith("\n") else "\n"))
    cwd = context.resolve(args.get("working_directory"))
    context.dirs.make_dir(cwd)
    environment = dict(context.environment)
    environment.update({str(k): "" if v is None else str(v) for k, v in (args.get("environment") or {}).items()})
    process = StepCommand(context.index, [*shell, str(script)], cwd, environment, context.output.write, timeout)
    result = await context.backend.run(process)
    if result.timed_out:
        await context.output.line(f"\nToo long with no output (exceeded {timeout_text})")
    return StepOutcome.of_process(result, f"step {context.step.name!r}", timeout_text)
