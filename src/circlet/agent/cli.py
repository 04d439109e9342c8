"""The ``circlet runner`` command (mounted by ``circlet.cli``), also ``python -m circlet.agent``."""

from __future__ import annotations

import asyncio
import getpass
import json
import shlex
import socket
from pathlib import Path
from typing import Annotated

import typer

from circlet.agent.agent import AgentOptions, run_agent
from circlet.agent.backends import DEFAULT_HOST_JOB_IMAGE
from circlet.agent.containers import ENGINE_CHOICES
from circlet.agent.logs import configure_logging
from circlet.agent.protocol import RunnerClient

DOCKER_MODES = ("host", "fail")
HOST_JOBS = ("allow", "refuse")
REFUSAL = (
    "this runner does not run jobs on its host: it is not root, so a job would run as the runner's own user"
    " {user} and could read everything that user can (the server's data when it shares the host); the operator"
    " may allow it with `circlet serve --trust-jobs` (or `circlet runner --host-jobs allow`), or give the runner"
    " a rootless container engine (rootless podman: host jobs then run in a container of --host-job-image)"
)


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
        str,
        typer.Option(
            "--docker",
            envvar="CIRCLET_RUNNER_DOCKER",
            help="docker jobs when there is no container engine: 'host' runs them on this host, 'fail' refuses them.",
        ),
    ] = "host",
    container_engine: Annotated[
        str,
        typer.Option(
            "--container-engine",
            envvar="CIRCLET_RUNNER_CONTAINER_ENGINE",
            help="Where docker jobs run: 'auto' (podman, else docker, if one answers), 'podman', 'docker', 'none'.",
        ),
    ] = "auto",
    container_engine_args: Annotated[
        str,
        typer.Option(
            "--container-engine-args",
            envvar="CIRCLET_RUNNER_CONTAINER_ENGINE_ARGS",
            help="Global arguments for the engine's CLI, e.g. '--runtime runc --cgroup-manager=cgroupfs'.",
        ),
    ] = "",
    containers_conf: Annotated[
        Path | None,
        typer.Option(
            "--containers-conf",
            envvar="CIRCLET_RUNNER_CONTAINERS_CONF",
            help="podman only: the containers.conf it reads instead of the system's (CONTAINERS_CONF).",
        ),
    ] = None,
    job_user: Annotated[
        str,
        typer.Option(
            "--job-user",
            envvar="CIRCLET_JOB_USER",
            help="When run as root: the users jobs run as, comma-separated, one per concurrent task"
            " (default: circlet-job-0, circlet-job-1, ..., created when missing).",
        ),
    ] = "",
    host_jobs: Annotated[
        str,
        typer.Option(
            "--host-jobs",
            help="When not root: 'allow' runs host jobs as this user, 'refuse' fails them (jobs cannot be isolated).",
        ),
    ] = "allow",
    host_job_image: Annotated[
        str,
        typer.Option(
            "--host-job-image",
            envvar="CIRCLET_RUNNER_HOST_JOB_IMAGE",
            help="When not root and host jobs are refused: the image they run in instead, through a rootless"
            " container engine ('' refuses them).",
        ),
    ] = DEFAULT_HOST_JOB_IMAGE,
    once: Annotated[bool, typer.Option("--once", help="Run one task, then exit.")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="This runner's name for the server (default: the host name).")
    ] = None,
) -> None:
    """Run a runner agent: claim tasks of one resource class and run their jobs on this host."""
    if docker not in DOCKER_MODES:
        typer.echo(json.dumps({"error": f"--docker must be one of {', '.join(DOCKER_MODES)}"}), err=True)
        raise typer.Exit(2)
    if container_engine not in ENGINE_CHOICES:
        typer.echo(json.dumps({"error": f"--container-engine must be one of {', '.join(ENGINE_CHOICES)}"}), err=True)
        raise typer.Exit(2)
    if host_jobs not in HOST_JOBS:
        typer.echo(json.dumps({"error": f"--host-jobs must be one of {', '.join(HOST_JOBS)}"}), err=True)
        raise typer.Exit(2)
    configure_logging()
    options = AgentOptions(
        resource_class=resource_class,
        work_dir=work_dir,
        max_tasks=max_tasks,
        docker="host" if docker == "host" else "fail",
        container_engine=ENGINE_CHOICES[ENGINE_CHOICES.index(container_engine)],
        container_engine_args=tuple(shlex.split(container_engine_args)),
        containers_conf=containers_conf,
        once=once,
        job_users=tuple(name.strip() for name in job_user.split(",") if name.strip()),
        refuse_host_jobs=REFUSAL.format(user=getpass.getuser()) if host_jobs == "refuse" else None,
        host_job_image=host_job_image.strip() or None,
    )

    async def run() -> int:
        client = RunnerClient(url, token, runner_name=name or socket.gethostname())
        return await run_agent(client, options)

    status = asyncio.run(run())
    if status:
        raise typer.Exit(status)


def main() -> None:
    typer.run(runner_command)
