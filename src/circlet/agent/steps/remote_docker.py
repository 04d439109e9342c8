"""The ``setup_remote_docker`` step. This runner starts no remote engine: a job uses whatever Docker
engine the ``docker`` CLI on the runner reaches (``DOCKER_HOST``, or the CLI's default). The step
checks that one answers ``docker info`` and fails clearly when none does, so a job learns it at this
step rather than at its first ``docker build``."""

from __future__ import annotations

import os
import shutil

from circlet.agent.context import StepContext, StepOutcome
from circlet.agent.process import run_process

PROBE_SECONDS = 5.0


async def setup_remote_docker(context: StepContext) -> StepOutcome:
    args = context.step.args
    if args.get("version"):
        await context.output.line(
            f"setup_remote_docker: version {args['version']} asked for; this runner uses its Docker engine as it is"
        )
    if args.get("docker_layer_caching"):
        await context.output.line("setup_remote_docker: docker_layer_caching is not available on this runner; ignored")
    server_version, problem = await probe_engine(context)
    if problem is not None:
        message = f"setup_remote_docker: this runner has no Docker engine (docker info failed: {problem})"
        await context.output.line(message)
        return StepOutcome("failed", None, message)
    where = context.environment.get("DOCKER_HOST") or "the docker CLI's default engine"
    await context.output.line(f"setup_remote_docker: using {where} (Docker server version {server_version})")
    return StepOutcome("success", 0)


async def probe_engine(context: StepContext) -> tuple[str | None, str | None]:
    """The engine's server version, or why ``docker info`` got none within ``PROBE_SECONDS``."""
    docker = shutil.which("docker", path=context.environment.get("PATH", os.defpath))
    if docker is None:
        return None, "there is no docker command on the PATH"
    answer = bytearray()

    async def collect(chunk: bytes) -> None:
        answer.extend(chunk)

    result = await run_process(  # as the job: the engine it finds is the one its steps will reach
        context.as_job([docker, "info", "--format", "{{.ServerVersion}}"]),
        cwd=context.working_directory,
        env=context.environment,
        groups=context.groups,
        on_output=collect,
        no_output_timeout=PROBE_SECONDS,
    )
    lines = [line.strip() for line in answer.decode(errors="replace").splitlines() if line.strip()]
    if result.timed_out:
        return None, f"no answer within {PROBE_SECONDS:.0f}s"
    if result.exit_code != 0 or not lines:
        return None, lines[-1] if lines else f"exit code {result.exit_code}"
    return lines[0], None
