"""How far one config may expand: jobs, matrix combinations, nesting, steps and compiled size.

Each limit is checked before the work it bounds is done (a matrix's combinations are counted from
the lengths of its value lists, not built), and going past one stops the compilation at once with
an error that names the limit, so a config can never make the compiler run away with time or
memory. CircleCI's own figure is used where it documents one (the compiled config's 8 MB).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExpansionLimits:
    jobs_per_workflow: int = 1000
    jobs_per_pipeline: int = 5000
    matrix_combinations: int = 1000
    nesting_depth: int = 50
    steps_per_pipeline: int = 100_000
    compiled_config_bytes: int = 8 * 1024 * 1024


DEFAULT_LIMITS = ExpansionLimits()


@dataclass(slots=True)
class ExpansionBudget:
    """What one compilation has expanded so far, against its limits."""

    limits: ExpansionLimits = DEFAULT_LIMITS
    jobs: int = 0
    steps: int = 0
