"""Real containers for ``docker`` jobs, through a Docker-compatible CLI (podman or docker)."""

from circlet.agent.containers.engine import (
    ENGINE_CHOICES,
    ContainerEngine,
    EngineChoice,
    detect_engine,
)
from circlet.agent.containers.leftovers import remove_leftovers
from circlet.agent.containers.pod import (
    ContainerConfigError,
    ContainerSpec,
    TaskContainers,
    agent_python_mounts,
    container_specs,
    environment_script,
)

__all__ = [
    "ENGINE_CHOICES",
    "ContainerConfigError",
    "ContainerEngine",
    "ContainerSpec",
    "EngineChoice",
    "TaskContainers",
    "agent_python_mounts",
    "container_specs",
    "detect_engine",
    "environment_script",
    "remove_leftovers",
]
