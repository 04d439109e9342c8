"""What compiling one config yields, and what is asked of it afterwards: its YAML (bounded in size)
and the workflows a push of a branch or tag runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, Diagnostics, Location
from .graph import WorkflowGraph, filter_workflow
from .limits import ExpansionLimits
from .pipeline import PipelineContext
from .render import render_processed
from .templates import Scope


@dataclass
class CompiledConfig:
    """The result of compiling one config.

    ``processed`` is the processed config as data (``version``, ``jobs``, ``workflows``);
    ``workflows`` the graph of every workflow that runs (``when``/``unless`` true);
    ``skipped_workflows`` the ones dropped by ``when``/``unless``.
    """

    processed: dict[str, Any]
    workflows: list[WorkflowGraph]
    skipped_workflows: list[str]
    orb_resolutions: list[tuple[str, str]]
    setup: bool
    source: str
    pipeline: PipelineContext
    warnings: list[ConfigError] = field(default_factory=list)

    def to_yaml(self) -> str:
        return render_processed(self)

    def to_yaml_within(self, limits: ExpansionLimits, filename: str) -> str:
        """The processed config, refused (as an error of ``filename``) if it is larger than the
        limit."""
        rendered = self.to_yaml()
        size = len(rendered.encode())
        if size > limits.compiled_config_bytes:
            diag = Diagnostics()
            diag.over_limit(
                "compiled config size in bytes",
                size,
                limits.compiled_config_bytes,
                "compiled_config_bytes",
                "",
                Location(filename, 1, 1),
            )
        return rendered

    def graph_for(self, branch: str | None = None, tag: str | None = None) -> list[WorkflowGraph]:
        """The workflows a push of ``branch`` (or ``tag``) runs, with filtered-out jobs removed
        (R-9.6, R-9.7).  Scheduled (``triggers``) workflows are left out."""
        values = dict(self.pipeline.values)
        values["git.branch"] = branch
        values["git.tag"] = tag
        context = PipelineContext(values, self.pipeline.parameters)
        scope = Scope(context)
        result = []
        for workflow in self.workflows:
            if workflow.triggers:
                continue
            filtered = filter_workflow(workflow, branch, tag, scope.lookup)
            if filtered.jobs:
                result.append(filtered)
        return result
