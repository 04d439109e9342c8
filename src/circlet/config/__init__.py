"""circlet's `.circleci/config.yml` compiler (pure: imports nothing else from circlet).

Entry point for the pipeline engine: :func:`compile_config`.
"""

from .compiled import CompiledConfig
from .compiler import compile_config
from .errors import ConfigError, ConfigInvalid, Location
from .graph import JobNode, WorkflowGraph
from .limits import DEFAULT_LIMITS, ExpansionLimits
from .orbs import OrbRegistry, default_orb_dirs
from .pipeline import PipelineContext, fabricated_values

__all__ = [
    "DEFAULT_LIMITS",
    "CompiledConfig",
    "ConfigError",
    "ConfigInvalid",
    "ExpansionLimits",
    "JobNode",
    "Location",
    "OrbRegistry",
    "PipelineContext",
    "WorkflowGraph",
    "compile_config",
    "default_orb_dirs",
    "fabricated_values",
]
