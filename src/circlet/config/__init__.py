"""circlet's `.circleci/config.yml` compiler (pure: imports nothing else from circlet).

Entry point for the pipeline engine: :func:`compile_config`.
"""

from .compiler import CompiledConfig, compile_config
from .errors import ConfigError, ConfigInvalid, Location
from .graph import JobNode, WorkflowGraph
from .orbs import OrbRegistry, default_orb_dirs
from .pipeline import PipelineContext, fabricated_values

__all__ = [
    "CompiledConfig",
    "ConfigError",
    "ConfigInvalid",
    "JobNode",
    "Location",
    "OrbRegistry",
    "PipelineContext",
    "WorkflowGraph",
    "compile_config",
    "default_orb_dirs",
    "fabricated_values",
]
