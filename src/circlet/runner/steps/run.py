"""The ``run`` step: a command in a shell, in its own process group."""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess

from circlet.runner.context import StepContext, StepOutcome
from circlet.runner.durations import parse_duration

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
        fallback, sources = default_shell()
        shell, prelude = list(fallback), SOURCE_BASH_ENV if sources else ""
    script = context.dirs.data / f"step-{context.index}.sh"
    script.write_text(prelude + command + ("" if command.endswith("\n") else "\n"))
    cwd = context.resolve(args.get("working_directory"))
    cwd.mkdir(parents=True, exist_ok=True)
    environment = dict(context.environment)
    environment.update({str(k): "" if v is None else str(v) for k, v in (args.get("environment") or {}).items()})
    result = await context.run([*shell, str(script)], cwd=cwd, env=environment, no_output_timeout=timeout)
    if result.timed_out:
        await context.output.line(f"\nToo long with no output (exceeded {timeout_text})")
    return StepOutcome.of_process(result, f"step {context.step.name!r}", timeout_text)
