"""Where a task's job code runs: one interface (``base.Backend``), the host and container backends,
and the choice between them (``choice.choose_backend``)."""

from circlet.agent.backends.base import Backend, Shell, StepCommand
from circlet.agent.backends.choice import (
    DEFAULT_HOST_JOB_IMAGE,
    HOST_EXECUTORS,
    DockerMode,
    RunnerOffer,
    choose_backend,
)
from circlet.agent.backends.container import ContainerBackend
from circlet.agent.backends.host import HostBackend, default_shell, host_path

__all__ = [
    "DEFAULT_HOST_JOB_IMAGE",
    "HOST_EXECUTORS",
    "Backend",
    "ContainerBackend",
    "DockerMode",
    "HostBackend",
    "RunnerOffer",
    "Shell",
    "StepCommand",
    "choose_backend",
    "default_shell",
    "host_path",
]
