"""``<< ... >>`` substitution (SEMANTICS R-5): element parameters, pipeline values and parameters,
matrix values and operator expressions, with ``\\<<`` as an escape."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Diagnostics
from .expressions import REFERENCE, ExpressionError, evaluate, parse_expression, truthy
from .loader import YFloat, YList, YMap, loc_of
from .pipeline import PipelineContext

_TEMPLATE = re.compile(r"<<((?:(?!<<)[^\n])*?)>>")
_SIMPLE_REF = re.compile(r"\s*((?:pipeline|parameters|matrix)\.[A-Za-z0-9_.\-]+)\s*")
_SECTION = re.compile(
    r"<<\s*([#^])\s*((?:pipeline|parameters|matrix)\.[A-Za-z0-9_.\-]+)\s*>>(.*?)<<\s*/\s*\2\s*>>",
    re.DOTALL,
)
_MAX_SECTION_PASSES = 20


class TemplateError(Exception):
    """A reference or expression inside ``<< >>`` that cannot be resolved."""


@dataclass(frozen=True)
class Scope:
    """What ``<< >>`` may refer to at one place in the config.

    ``params`` is None where no element parameters are in scope (workflows, top level);
    ``in_orb`` hides pipeline parameters (R-4.3, R-12.3); ``literal`` turns substitution off
    (version 2.0 configs have no templates).
    """

    pipeline: PipelineContext
    params: Mapping[str, Any] | None = None
    in_orb: bool = False
    matrix: Mapping[str, Any] | None = None
    literal: bool = False

    def with_params(self, params: Mapping[str, Any] | None, in_orb: bool) -> Scope:
        return Scope(self.pipeline, params, in_orb, None, self.literal)

    def with_matrix(self, matrix: Mapping[str, Any]) -> Scope:
        return Scope(self.pipeline, self.params, self.in_orb, matrix, self.literal)

    def lookup(self, name: str) -> Any:
        if name.startswith("parameters."):
            key = name[len("parameters.") :]
            if self.params is None or key not in self.params:
                raise ExpressionError(f"Arguments referenced without declared parameters: {name}")
            return self.params[key]
        if name.startswith("matrix."):
            key = name[len("matrix.") :]
            if self.matrix is None or key not in self.matrix:
                raise ExpressionError(
                    f"'{name}' is only available in a workflow job entry that uses a matrix with parameter '{key}'"
                )
            return self.matrix[key]
        if name.startswith("pipeline.parameters."):
            if self.in_orb:
                raise ExpressionError(f"pipeline parameters are not available inside orbs: {name}")
            return self.pipeline.parameter(name[len("pipeline.parameters.") :])
        if name.startswith("pipeline."):
            return self.pipeline.value(name[len("pipeline.") :])
        raise ExpressionError(f"unknown name '{name}'")


def stringify(value: Any) -> str:
    """Text form of a substituted value inside a larger string (R-5.2)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | YFloat):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TemplateError("a list or map value cannot be embedded in a string")


def _evaluate_template(content: str, scope: Scope) -> Any:
    simple = _SIMPLE_REF.fullmatch(content)
    try:
        if simple:
            value = scope.lookup(simple.group(1))
            return "" if value is None and simple.group(1).startswith("pipeline.") else value
        return evaluate(parse_expression(content), scope.lookup)
    except ExpressionError as exc:
        where = f" (column {exc.column} of '<<{content}>>')" if exc.column else ""
        raise TemplateError(exc.message + where) from None


def _render_sections(text: str, scope: Scope) -> str:
    """Mustache-style sections used by orbs: ``<<#parameters.x>>text<</parameters.x>>`` keeps
    ``text`` when the value is truthy, ``<<^...>>`` when it is falsy."""

    def replace(match: re.Match[str]) -> str:
        try:
            value = scope.lookup(match.group(2))
        except ExpressionError as exc:
            raise TemplateError(exc.message) from None
        keep = truthy(value) if match.group(1) == "#" else not truthy(value)
        return match.group(3) if keep else ""

    for _ in range(_MAX_SECTION_PASSES):
        rendered = _SECTION.sub(replace, text)
        if rendered == text:
            break
        text = rendered
    return text


def render_string(text: str, scope: Scope) -> Any:
    """Substitute every template in ``text``; a string that is exactly one template keeps the
    value's type.  ``\\<<`` becomes a literal ``<<``.  Raises TemplateError."""
    if "<<" not in text:
        return text
    if "#" in text or "^" in text:
        text = _render_sections(text, scope)
    out: list[str] = []
    pos = 0
    search_from = 0
    while True:
        start = text.find("<<", search_from)
        if start < 0:
            break
        if start > 0 and text[start - 1] == "\\":
            out.append(text[pos : start - 1])
            out.append("<<")
            pos = search_from = start + 2
            continue
        match = _TEMPLATE.match(text, start)
        if match is None or not REFERENCE.search(match.group(1)):
            search_from = start + 2
            continue
        value = _evaluate_template(match.group(1), scope)
        if start == 0 and match.end() == len(text):
            return value
        out.append(text[pos:start])
        out.append(stringify(value))
        pos = search_from = match.end()
    out.append(text[pos:])
    return "".join(out)


class Substituter:
    """Walks a value, substituting templates and recording located errors."""

    def __init__(self, scope: Scope, diag: Diagnostics, path: str) -> None:
        self.scope = scope
        self.diag = diag
        self.path = [path] if path else []

    def run(self, value: Any) -> Any:
        return self._walk(value, None, None)

    def _walk(self, value: Any, container: Any, key: Any) -> Any:
        if isinstance(value, str):
            if "<<" not in value:
                return value
            try:
                return render_string(value, self.scope)
            except TemplateError as exc:
                self.diag.error(str(exc), self._path(), loc_of(container, key))
                return value
        if isinstance(value, YMap):
            if not value.templated:
                return value
            out = value.derive()
            for k, v in value.items():
                self.path.append(f".{k}" if self.path else str(k))
                new_key = k
                if "<<" in k:
                    rendered = self._walk(k, value, k)
                    new_key = rendered if isinstance(rendered, str) else k
                out[new_key] = self._walk(v, value, k)
                self.path.pop()
            return out
        if isinstance(value, dict):
            return {k: self._walk(v, container, key) for k, v in value.items()}
        if isinstance(value, YList):
            if not value.templated:
                return value
            out_list = value.derive()
            for i, item in enumerate(value):
                self.path.append(f"[{i}]")
                out_list.append(self._walk(item, value, i))
                self.path.pop()
            return out_list
        if isinstance(value, list):
            return [self._walk(v, container, key) for v in value]
        return value

    def _path(self) -> str:
        return "".join(self.path)


def substitute(value: Any, scope: Scope, diag: Diagnostics, path: str = "") -> Any:
    """Substitute templates throughout ``value`` (returns a new structure; input is not mutated).
    A literal scope (version 2.0 configs) leaves the value untouched."""
    if scope.literal:
        return value
    return Substituter(scope, diag, path).run(value)
