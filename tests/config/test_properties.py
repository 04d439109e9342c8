"""Property tests: no input to the expression language, the logic statements or ``<< >>``
substitution makes the compiler fail with anything but its own errors."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from circlet.config import ConfigInvalid, PipelineContext, compile_config
from circlet.config.expressions import ExpressionError, evaluate, evaluate_logic, parse_expression
from circlet.config.templates import Scope, TemplateError, render_string

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)
VALUES = {"git.branch": "main", "git.tag": None, "number": 7, "git.branch.is_default": True}
PARAMS = {"flag": False, "name": "x", "count": 3}
SCOPE = Scope(PipelineContext(VALUES, PARAMS), params={"p": "value", "n": 2, "b": True})

ATOMS = st.sampled_from(
    [
        "pipeline.git.branch",
        "pipeline.git.tag",
        "pipeline.number",
        "pipeline.parameters.flag",
        "pipeline.parameters.name",
        "pipeline.parameters.count",
        "pipeline.unknown",
        '"main"',
        '"v1"',
        "1",
        "0",
        "-3",
        "true",
        "false",
        "null",
        "parameters.p",
        "parameters.missing",
    ]
)
OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "starts-with", "and", "or"])
EXPRESSION_TEXT = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, OPERATORS, inner).map(" ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"{e} matches /^m.*$/"),
    ),
    max_leaves=12,
)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)


@SETTINGS
@given(EXPRESSION_TEXT)
def test_generated_expressions_evaluate_or_fail_cleanly(text: str) -> None:
    try:
        result = evaluate(parse_expression(text), SCOPE.lookup)
    except ExpressionError as exc:
        assert exc.message
        return
    assert result is None or isinstance(result, bool | int | str)


@SETTINGS
@given(
    st.one_of(
        TEXT,
        st.lists(
            st.sampled_from(["(", ")", "not", "and", "or", "==", '"', "/", "matches", "pipeline.x", "1", " "]),
            max_size=12,
        ).map("".join),
    )
)
def test_arbitrary_expression_text_never_crashes(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        evaluate(parse_expression(text), SCOPE.lookup)


LOGIC: Any = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["and", "or", "not", "equal", "matches", "pattern", "value", "x"]), inner, max_size=2
        ),
    ),
    max_leaves=10,
)


@SETTINGS
@given(LOGIC)
def test_logic_statements_evaluate_or_fail_cleanly(statement: Any) -> None:
    try:
        assert isinstance(evaluate_logic(statement), bool)
    except ExpressionError as exc:
        assert exc.message


TEMPLATE_TEXT = st.lists(
    st.one_of(
        TEXT,
        st.sampled_from(
            [
                "<<",
                ">>",
                "\\<<",
                "<< parameters.p >>",
                "<<parameters.n>>",
                "<< pipeline.git.branch >>",
                "<<#parameters.b>>",
                "<</parameters.b>>",
                "<< parameters.nope >>",
                "<< pipeline.number > 2 >>",
                "<< matrix.v >>",
            ]
        ),
    ),
    max_size=8,
).map("".join)


@SETTINGS
@given(TEMPLATE_TEXT)
def test_substitution_never_crashes(text: str) -> None:
    try:
        result = render_string(text, SCOPE)
    except TemplateError as exc:
        assert str(exc)
        return
    assert isinstance(result, str | int | bool)


@SETTINGS
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>\\"), max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>\\"), max_size=40),
)
def test_parameter_value_is_inserted_verbatim(prefix: str, value: str) -> None:
    scope = Scope(PipelineContext(), params={"x": value})
    assert render_string(f"{prefix}<< parameters.x >>!", scope) == f"{prefix}{value}!"


@SETTINGS
@given(TEMPLATE_TEXT, TEMPLATE_TEXT)
def test_compiling_configs_with_arbitrary_templates_never_crashes(command: str, when: str) -> None:
    source = (
        "version: 2.1\n"
        "parameters: {flag: {type: boolean, default: true}}\n"
        "jobs:\n  build:\n    parameters: {p: {type: string, default: v}, n: {type: integer,"
        " default: 1}, b: {type: boolean, default: true}}\n"
        "    docker: [{image: cimg/base:stable}]\n"
        f"    steps:\n      - run: {_quoted(command)}\n"
        f"      - when: {{condition: {_quoted(when)}, steps: [checkout]}}\n"
        f"workflows:\n  main:\n    when: {_quoted(when)}\n    jobs: [build]\n"
    )
    try:
        compile_config(source, orb_dirs=[]).to_yaml()
    except ConfigInvalid as exc:
        assert exc.errors


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'
