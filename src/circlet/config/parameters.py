"""Parameter declarations, type checks and argument binding (SEMANTICS R-4, R-7.1–R-7.3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Diagnostics, Location
from .loader import YList, loc_of

PARAMETER_TYPES = ("string", "boolean", "integer", "enum", "executor", "steps", "env_var_name")
PIPELINE_PARAMETER_TYPES = ("string", "boolean", "integer", "enum")
RESERVED_JOB_PARAMETERS = frozenset(
    {
        "name",
        "requires",
        "context",
        "type",
        "filters",
        "matrix",
        "pre-steps",
        "post-steps",
        "serial-group",
        "override-with",
    }
)
_DECLARATION_KEYS = frozenset({"type", "default", "description", "enum"})
_ENV_VAR_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PARAMETER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
MISSING: Any = object()


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    default: Any = MISSING
    enum: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is MISSING


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "list"
    return "map"


def enum_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_value(spec: ParameterSpec, value: Any) -> str | None:
    """Return a message if ``value`` is not acceptable for ``spec``, else None (R-7.2)."""
    kind = spec.type
    got = type_name(value)
    if kind in ("string", "env_var_name"):
        if not isinstance(value, str):
            return f"expected type string but got {got} (quote the value to pass it as a string)"
        if kind == "env_var_name" and not _ENV_VAR_NAME.fullmatch(value):
            return f"'{value}' is not a valid environment variable name"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"expected type boolean but got {got}"
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected type integer but got {got}"
    if kind == "enum":
        if isinstance(value, list | dict) or value is None:
            return f"expected one of {', '.join(spec.enum)} but got {got}"
        if enum_text(value) not in spec.enum:
            return f"'{enum_text(value)}' is not one of: {', '.join(spec.enum)}"
        return None
    if kind == "steps":
        return None if isinstance(value, list) else f"expected a list of steps but got {got}"
    return _check_executor_value(value)


def _check_executor_value(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return None
    if getattr(value, "is_resolved_executor", False):
        return None
    return f"expected an executor name or a map with 'name' but got {type_name(value)}"


def parse_declarations(
    decls: Any, path: str, diag: Diagnostics, *, pipeline: bool = False, job: bool = False
) -> dict[str, ParameterSpec]:
    """Read a ``parameters:`` block; report every malformed declaration."""
    specs: dict[str, ParameterSpec] = {}
    if decls is None:
        return specs
    if not isinstance(decls, dict):
        diag.error("parameters must be a map", path, loc_of(decls))
        return specs
    allowed = PIPELINE_PARAMETER_TYPES if pipeline else PARAMETER_TYPES
    for name, decl in decls.items():
        where = f"{path}.{name}"
        loc = loc_of(decls, name)
        spec = _parse_one(name, decl, where, loc, allowed, pipeline, diag)
        if spec is None:
            continue
        if job and name in RESERVED_JOB_PARAMETERS:
            diag.error(f"'{name}' is reserved and cannot be a job parameter", where, loc)
            continue
        specs[name] = spec
    return specs


def _parse_one(
    name: str,
    decl: Any,
    where: str,
    loc: Location | None,
    allowed: tuple[str, ...],
    pipeline: bool,
    diag: Diagnostics,
) -> ParameterSpec | None:
    if not _PARAMETER_NAME.fullmatch(name):
        diag.error(
            f"invalid parameter name '{name}' (letters, digits, '_' and '-', starting with a letter)", where, loc
        )
        return None
    if not isinstance(decl, dict):
        diag.error("a parameter declaration must be a map with at least 'type'", where, loc)
        return None
    unknown = sorted(k for k in decl if k not in _DECLARATION_KEYS)
    if unknown:
        diag.error(f"unknown key(s) in parameter declaration: {', '.join(unknown)}", where, loc)
    kind = decl.get("type")
    if kind not in allowed:
        shown = "missing" if kind is None else f"'{kind}'"
        diag.error(f"parameter type {shown}; expected one of: {', '.join(allowed)}", where, loc)
        return None
    enum: tuple[str, ...] = ()
    if kind == "enum":
        values = decl.get("enum")
        if not isinstance(values, list) or not values:
            diag.error("an enum parameter needs a non-empty 'enum' list", where, loc)
            return None
        enum = tuple(enum_text(v) for v in values)
    default = decl.get("default", MISSING) if "default" in decl else MISSING
    if pipeline and default is MISSING:
        diag.error("a pipeline parameter needs a default", where, loc)
        return None
    spec = ParameterSpec(name, kind, _normalise_default(kind, default), enum)
    if default is not MISSING and not _default_is_template(default):
        problem = check_value(spec, spec.default)
        if problem:
            diag.error(f"default: {problem}", where, loc)
            return None
    return spec


def _normalise_default(kind: str, default: Any) -> Any:
    if kind == "steps" and default is None:
        return YList()
    return default


def _default_is_template(value: Any) -> bool:
    return isinstance(value, str) and "<<" in value


def bind_arguments(
    specs: Mapping[str, ParameterSpec],
    args: Mapping[str, Any],
    owner: str,
    path: str,
    loc: Location | None,
    diag: Diagnostics,
) -> dict[str, Any] | None:
    """Bind arguments to declared parameters, applying defaults.  Returns None on any error."""
    ok = True
    unexpected = [k for k in args if k not in specs]
    if unexpected:
        diag.error(f"Unexpected argument(s): {', '.join(unexpected)} (not a parameter of {owner})", path, loc)
        ok = False
    bound: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in args:
            value = args[name]
            problem = check_value(spec, value)
            if problem:
                arg_loc = loc_of(args, name) or loc
                diag.error(f"argument '{name}' of {owner}: {problem}", path, arg_loc)
                ok = False
                continue
            bound[name] = enum_text(value) if spec.type == "enum" else value
        elif spec.required:
            diag.error(f"Required parameter {name} not passed to {owner}", path, loc)
            ok = False
        else:
            bound[name] = spec.default
    return bound if ok else None


def coerce_pipeline_argument(spec: ParameterSpec, value: Any) -> Any:
    """Trigger values arrive as JSON; a float with an integral value is accepted for an integer."""
    if spec.type == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
