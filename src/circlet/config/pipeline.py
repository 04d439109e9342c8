"""Pipeline values (R-3) and resolved pipeline parameters as seen by templates and expressions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .expressions import ExpressionError

_GIT = (
    "branch",
    "branch.is_default",
    "tag",
    "revision",
    "base_revision",
    "repo_url",
    "repo_owner",
    "repo_name",
    "repo_id",
    "commit.url",
    "commit.subject",
    "commit.body",
    "commit.author_login",
)
_CONFIG = ("repository.name", "repository.url", "file_path", "ref", "sha")
_DEPLOY = ("component_name", "environment_name", "target_version", "current_version", "namespace", "reason")

KNOWN_VALUES: frozenset[str] = frozenset(
    [
        "id",
        "number",
        "definition.id",
        "name",
        "project.git_url",
        "project.type",
        "project.slug",
        "integration_source",
        "trigger.received_at",
        "trigger.id",
        "trigger.type",
        "trigger_source",
        "schedule.name",
        "schedule.id",
        "event.name",
        "event.action",
        "event.context.github.pr_url",
        "trigger_parameters.webhook.body",
    ]
    + [f"git.{n}" for n in _GIT]
    + [f"config.{n}" for n in _CONFIG]
    + [f"deploy.{n}" for n in _DEPLOY]
)
"""Names under ``pipeline.`` (without the prefix) that circlet provides."""

KNOWN_PREFIXES: tuple[str, ...] = (
    "event.github.",
    "trigger_parameters.circleci.",
    "trigger_parameters.github_app.",
    "trigger_parameters.gitlab.",
)


def is_known_value(name: str) -> bool:
    return name in KNOWN_VALUES or name.startswith(KNOWN_PREFIXES)


def flatten_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Accept pipeline values as flat dotted keys (``git.branch``) or nested maps, with or without
    the ``pipeline.`` prefix; return flat keys without the prefix."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, inner in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value

    for key, value in values.items():
        name = key[len("pipeline.") :] if key.startswith("pipeline.") else key
        visit(name, value)
    return flat


@dataclass(frozen=True)
class PipelineContext:
    """Trigger-supplied pipeline values plus the config's resolved pipeline parameters."""

    values: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        """``pipeline.<name>``; a known but absent value is None (renders as empty text)."""
        if name in self.values:
            return self.values[name]
        if is_known_value(name):
            return None
        raise ExpressionError(f"unknown pipeline value 'pipeline.{name}'")

    def parameter(self, name: str) -> Any:
        if name not in self.parameters:
            raise ExpressionError(f"unknown pipeline parameter 'pipeline.parameters.{name}'")
        return self.parameters[name]


def fabricated_values() -> dict[str, Any]:
    """Stand-in values for compiling outside a real pipeline (``circlet config process``), in the
    spirit of the CircleCI CLI: a first pipeline of a GitHub project, triggered through the API."""
    return {
        "id": "00000000-0000-0000-0000-000000000001",
        "number": 1,
        "project.git_url": "https://github.com/example/project",
        "project.type": "github",
        "project.slug": "gh/example/project",
        "trigger_source": "api",
        "trigger.type": "api",
        "event.name": "api",
        "event.action": "api",
        "git.revision": "0000000000000000000000000000000000000000",
    }
