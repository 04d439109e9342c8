"""Which backend runs a task, from the task's executor and what this runner offers: the one place
that decides "containers or not" (docs/runner.md, docs/security.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from circlet.agent.backends.base import Backend
from circlet.agent.backends.container import ContainerBackend
from circlet.agent.backends.host import HostBackend
from circlet.agent.containers import (
    ContainerConfigError,
    ContainerEngine,
    ContainerSpec,
    TaskContainers,
    agent_python_mounts,
    container_specs,
)
from circlet.agent.isolation import JobUser
from circlet.agent.process import ProcessGroups
from circlet.agent.protocol import Task
from circlet.agent.task_dirs import TaskDirs

DockerMode = Literal["host", "fail"]
HOST_EXECUTORS = ("machine", "runner", "host")
"""Executors whose jobs CircleCI runs on the machine itself, not in a container."""
DEFAULT_HOST_JOB_IMAGE = "ubuntu:22.04"
"""The image of a host job run in a rootless container: the release of CircleCI's default machine
image (``ubuntu-2204``). ``--host-job-image`` (``CIRCLET_RUNNER_HOST_JOB_IMAGE``) names another."""


@dataclass(frozen=True)
class RunnerOffer:
    """What this runner offers its tasks, fixed when it starts."""

    docker: DockerMode = "host"
    """docker jobs when there is no container engine: ``host`` runs them here, ``fail`` refuses them."""
    engine: ContainerEngine | None = None
    job_user: JobUser | None = None
    """The task slot's user (an agent running as root), else None."""
    refuse_host_jobs: str | None = None
    """Why a job may not run on this host as the agent's own user (not root, jobs not trusted)."""
    host_job_image: str | None = DEFAULT_HOST_JOB_IMAGE
    """Where a refused host job runs instead, when the engine is rootless (None: refused)."""


def choose_backend(task: Task, dirs: TaskDirs, groups: ProcessGroups, offer: RunnerOffer) -> Backend | str:
    """The task's backend, or why this runner does not run it."""
    executor = task.executor
    engine = offer.engine
    if engine is not None and executor.type == "docker":
        try:
            specs = container_specs(executor.raw, task.environment)
        except ContainerConfigError as exc:
            return str(exc)
        return ContainerBackend(_containers(engine, task, dirs, specs), dirs, groups)
    if executor.type not in (*HOST_EXECUTORS, "docker"):
        return f"{executor.type} jobs are not supported by this runner: it runs jobs on its own host (machine, docker)"
    job_user = offer.job_user
    if job_user is None and offer.refuse_host_jobs is not None:
        if executor.type != "docker" and engine is not None and engine.rootless and offer.host_job_image:
            # The container's root is the agent's user, with nothing of the host but the task directory.
            notice = (
                f"circlet runner: this {executor.type} job runs in a container of {offer.host_job_image}"
                f" ({engine.kind}, rootless): the runner does not run jobs on its host as its own user"
            )
            specs = [ContainerSpec(offer.host_job_image)]
            return ContainerBackend(_containers(engine, task, dirs, specs), dirs, groups, notice=notice)
        return offer.refuse_host_jobs
    if executor.type == "docker" and offer.docker == "fail":
        return "docker jobs are not supported by this runner (it was started with --docker fail)"
    warning = None
    if executor.type == "docker":
        warning = (
            f"circlet runner: warning: this docker job runs directly on the runner's host (--docker host); "
            f"image {executor.image or '(none)'} is not used, no service containers, host tools only"
        )
    return HostBackend(dirs, groups, job_user, warning=warning)


def _containers(engine: ContainerEngine, task: Task, dirs: TaskDirs, specs: list[ContainerSpec]) -> TaskContainers:
    return TaskContainers(engine, task.task_id, dirs.root, specs, read_only_mounts=agent_python_mounts())
