"""The ``circlet runner`` command (mounted by ``circlet.cli``), also ``python -m circlet.runner``."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Annotated

import typer

from circlet.runner.agent import AgentOptions, run_agent
from circlet.runner.logs import configure_logging
from circlet.runner.protocol import RunnerClient

DOCKER_MODES = ("host", "fail")


def runner_command(
    url: Annotated[str, typer.Option("--url", help="The circlet server, e.g. http://127.0.0.1:8080.")],
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="CIRCLET_RUNNER_TOKEN",
            help="Runner token (better passed in the environment, out of sight of ps).",
        ),
    ],
    resource_class: Annotated[
        str, typer.Option("--resource-class", help="The resource class the token is for.")
    ] = "local",
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Where task directories go (default: a temporary directory)."),
    ] = None,
    max_tasks: Annotated[int, typer.Option("--max-tasks", min=1, help="Tasks run at the same time.")] = 1,
    docker: Annotated[
        str, typer.Option("--docker", help="docker jobs: 'host' runs them on this host, 'fail' refuses them.")
    ] = "host",
    once: Annotated[bool, typer.Option("--once", help="Run one task, then exit.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="This runner's name for the server (default: the host name).")
    ] = None,
) -> None:
    """Run a runner agent: claim tasks of one resource class and run their jobs on this host."""
    if docker not in DOCKER_MODES:
        typer.echo(json.dumps({"error": f"--docker must be one of {', '.join(DOCKER_MODES)}"}), err=True)
        raise typer.Exit(2)
    configure_logging()
    options = AgentOptions(
        resource_class=resource_class,
        work_dir=work_dir,
        max_tasks=max_tasks,
        docker="host" if docker == "host" else "fail",
        once=once,
    )

    async def run() -> int:
        client = RunnerClient(url, token, runner_name=name or socket.gethostname())
        return await run_agent(client, options)

    status = asyncio.run(run())
    if status:
        raise typer.Exit(status)


def main() -> None:
    typer.run(runner_command)
