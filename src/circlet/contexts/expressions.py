"""Expression restrictions: the config's expression language, limited to the values CircleCI makes
available to a context restriction (pipeline values and ``job.ssh.enabled``; pipeline parameters and
the deprecated ``pipeline.trigger_parameters`` are refused, because trigger inputs must not decide
whether a context's secrets are handed out)."""

from __future__ import annotations

from typing import Any

from circlet.config.expressions import (
    BoolOp,
    Compare,
    Expr,
    ExpressionError,
    Not,
    Ref,
    evaluate,
    parse_expression,
    truthy,
)

__all__ = ["ExpressionError", "parse_restriction_expression", "restriction_allows"]

FORBIDDEN_PREFIXES = ("pipeline.parameters.", "pipeline.trigger_parameters.")
JOB_VALUES = frozenset({"job.ssh.enabled"})


def _references(expr: Expr) -> list[Ref]:
    if isinstance(expr, Ref):
        return [expr]
    if isinstance(expr, Not):
        return _references(expr.operand)
    if isinstance(expr, BoolOp | Compare):
        return _references(expr.left) + _references(expr.right)
    return []


def parse_restriction_expression(text: str) -> Expr:
    """Parse and check the names an expression restriction may use; ExpressionError names the fault."""
    expr = parse_expression(text)
    for ref in _references(expr):
        if ref.name in JOB_VALUES:
            continue
        if not ref.name.startswith("pipeline.") or ref.name.startswith(FORBIDDEN_PREFIXES):
            raise ExpressionError(
                f"{ref.name!r} is not available to context restrictions "
                "(use pipeline values such as pipeline.git.branch, or job.ssh.enabled)",
                ref.column,
            )
    return expr


def restriction_allows(text: str, values: dict[str, Any]) -> bool:
    """True when the restriction holds for these values (``{"pipeline.git.branch": "main", ...}``).
    A name with no value is null; an expression that fails to evaluate denies."""
    try:
        return truthy(evaluate(parse_restriction_expression(text), values.get))
    except ExpressionError:
        return False
