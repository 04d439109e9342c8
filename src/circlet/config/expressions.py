"""The expression language of ``<< ... >>``, workflow ``when``/``unless`` and expression filters
(SEMANTICS R-6), the legacy logic statements (R-8), and Java-style full-match regexes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_LOGIC_DEPTH = 100

Lookup = Callable[[str], Any]
"""Resolves a dotted reference such as ``pipeline.git.branch``; raises ExpressionError if unknown."""


class ExpressionError(Exception):
    """A parse or type error in an expression; ``column`` is 1-based within the expression text."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "str", "int", "const", "ref", "regex", "op", "word", "(", ")"
    text: str
    value: Any
    column: int


_WORD_OPS = frozenset({"and", "or", "not", "starts-with", "matches"})
_CONSTANTS = {"true": True, "false": False, "null": None}
_SYMBOL_OPS = ("==", "!=", "<=", ">=", "<", ">")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_\-]*)*")
_INT = re.compile(r"-?[0-9]+")
REFERENCE = re.compile(r"(?:pipeline|parameters|matrix)\.[A-Za-z0-9_.\-]+")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token(ch, ch, None, i + 1))
            i += 1
        elif ch == '"':
            i = _read_string(text, i, tokens)
        elif ch == "/" and tokens and tokens[-1].text == "matches":
            i = _read_regex(text, i, tokens)
        elif text.startswith(_SYMBOL_OPS, i):
            op = next(o for o in _SYMBOL_OPS if text.startswith(o, i))
            tokens.append(Token("op", op, None, i + 1))
            i += len(op)
        elif (m := _INT.match(text, i)) and not _IDENT.match(text, i):
            tokens.append(Token("int", m.group(), int(m.group()), i + 1))
            i = m.end()
        elif m := _IDENT.match(text, i):
            word = m.group()
            if word in _WORD_OPS:
                tokens.append(Token("word", word, None, i + 1))
            elif word in _CONSTANTS:
                tokens.append(Token("const", word, _CONSTANTS[word], i + 1))
            else:
                tokens.append(Token("ref", word, None, i + 1))
            i = m.end()
        else:
            raise ExpressionError(f"unexpected character {ch!r}", i + 1)
    return tokens


def _read_string(text: str, start: int, tokens: list[Token]) -> int:
    i = start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            tokens.append(Token("str", text[start : i + 1], "".join(out), start + 1))
            return i + 1
        else:
            out.append(ch)
            i += 1
    raise ExpressionError("unterminated string literal", start + 1)


def _read_regex(text: str, start: int, tokens: list[Token]) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "/":
            tokens.append(Token("regex", text[start : i + 1], text[start + 1 : i], start + 1))
            return i + 1
        i += 1
    raise ExpressionError("unterminated regex literal", start + 1)


# --- AST -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str
    column: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr
    column: int


Expr = Literal | Ref | Regex | Not | BoolOp | Compare

_COMPARE_OPS = frozenset({"==", "!=", "<", "<=", ">", ">=", "starts-with", "matches"})


class _Parser:
    def __init__(self, tokens: list[Token], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.index = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("unexpected end of expression", len(self.text) + 1)
        self.index += 1
        return tok

    def parse(self) -> Expr:
        if not self.tokens:
            raise ExpressionError("empty expression", 1)
        expr = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise ExpressionError(f"unexpected {tok.text!r}", tok.column)
        return expr

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while (tok := self.peek()) is not None and tok.text == "or" and tok.kind == "word":
            self.index += 1
            left = BoolOp("or", left, self.parse_and())
        return left

    def parse_and(self) -> Expr:
        left = self.parse_compare()
        while (tok := self.peek()) is not None and tok.text == "and" and tok.kind == "word":
            self.index += 1
            left = BoolOp("and", left, self.parse_compare())
        return left

    def parse_compare(self) -> Expr:
        left = self.parse_unary()
        tok = self.peek()
        if tok is not None and tok.kind in ("op", "word") and tok.text in _COMPARE_OPS:
            self.index += 1
            right = self.parse_unary()
            return Compare(tok.text, left, right, tok.column)
        return left

    def parse_unary(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_LOGIC_DEPTH:
            raise ExpressionError(f"expression nested deeper than {MAX_LOGIC_DEPTH}", 1)
        try:
            tok = self.take()
            if tok.kind == "word" and tok.text == "not":
                return Not(self.parse_unary())
            return self.parse_primary(tok)
        finally:
            self.depth -= 1

    def parse_primary(self, tok: Token) -> Expr:
        if tok.kind == "(":
            inner = self.parse_or()
            close = self.take()
            if close.kind != ")":
                raise ExpressionError(f"expected ')' but found {close.text!r}", close.column)
            return inner
        if tok.kind in ("str", "int", "const"):
            return Literal(tok.value)
        if tok.kind == "ref":
            if "." not in tok.text:
                raise ExpressionError(f"unknown name {tok.text!r}", tok.column)
            return Ref(tok.text, tok.column)
        if tok.kind == "regex":
            return Regex(tok.value, tok.column)
        raise ExpressionError(f"unexpected {tok.text!r}", tok.column)


def parse_expression(text: str) -> Expr:
    """Parse an operator expression; raises ExpressionError with a 1-based column."""
    return _Parser(tokenize(text), text).parse()


def evaluate(expr: Expr, lookup: Lookup) -> Any:
    """Evaluate with Python-like short-circuit ``and``/``or`` returning an operand (R-6.3)."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Ref):
        return lookup(expr.name)
    if isinstance(expr, Regex):
        raise ExpressionError("a regex literal may only follow 'matches'", expr.column)
    if isinstance(expr, Not):
        return not truthy(evaluate(expr.operand, lookup))
    if isinstance(expr, BoolOp):
        left = evaluate(expr.left, lookup)
        if expr.op == "and":
            return evaluate(expr.right, lookup) if truthy(left) else left
        return left if truthy(left) else evaluate(expr.right, lookup)
    return _compare(expr, lookup)


def _compare(expr: Compare, lookup: Lookup) -> bool:
    left = evaluate(expr.left, lookup)
    op = expr.op
    if op == "matches":
        pattern = expr.right.pattern if isinstance(expr.right, Regex) else evaluate(expr.right, lookup)
        if not isinstance(left, str) or not isinstance(pattern, str):
            raise ExpressionError("'matches' needs a string on the left and a regex on the right", expr.column)
        return full_match(pattern, left)
    right = evaluate(expr.right, lookup)
    if op in ("==", "!="):
        same = type_class(left) == type_class(right) and left == right
        return same if op == "==" else not same
    if op == "starts-with":
        if not isinstance(left, str) or not isinstance(right, str):
            raise ExpressionError("'starts-with' needs two strings", expr.column)
        return left.startswith(right)
    if not is_number(left) or not is_number(right):
        raise ExpressionError(f"'{op}' needs two numbers", expr.column)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_class(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    return "other"


def truthy(value: Any) -> bool:
    """Falsy: false, null, 0, NaN, empty string, empty collections (R-8.2)."""
    if value is None or value is False:
        return False
    if is_number(value):
        return bool(value == value and value != 0)
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


# --- regexes -------------------------------------------------------------------------------------

_regex_cache: dict[str, re.Pattern[str]] = {}


def compile_java_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Java-syntax regex with Python's engine (named groups translated)."""
    compiled = _regex_cache.get(pattern)
    if compiled is None:
        translated = re.sub(r"\(\?<([A-Za-z][A-Za-z0-9]*)>", r"(?P<\1>", pattern)
        try:
            compiled = re.compile(translated)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ExpressionError(f"invalid regex /{pattern}/: {exc}") from None
        _regex_cache[pattern] = compiled
    return compiled


def full_match(pattern: str, value: str) -> bool:
    """Java ``String.matches`` semantics: the regex must match the whole value."""
    return compile_java_regex(pattern).fullmatch(value) is not None


# --- legacy logic statements (R-8) ---------------------------------------------------------------

_LOGIC_KEYS = frozenset({"and", "or", "not", "equal", "matches"})


def is_logic_statement(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _LOGIC_KEYS


def evaluate_logic(value: Any, depth: int = 0) -> bool:
    """Evaluate a (fully substituted) logic statement; raises ExpressionError on a malformed one."""
    if depth > MAX_LOGIC_DEPTH:
        raise ExpressionError(f"logic statement nested deeper than {MAX_LOGIC_DEPTH}")
    if not isinstance(value, dict):
        return truthy(value)
    if len(value) != 1 or next(iter(value)) not in _LOGIC_KEYS:
        keys = ", ".join(sorted(str(k) for k in value)) or "(none)"
        raise ExpressionError(
            f"a logic statement must have exactly one of and, or, not, equal, matches (found: {keys})"
        )
    ((op, arg),) = value.items()
    if op == "not":
        return not evaluate_logic(arg, depth + 1)
    if op in ("and", "or"):
        if not isinstance(arg, list) or not arg:
            raise ExpressionError(f"'{op}' needs a non-empty list")
        results = (evaluate_logic(item, depth + 1) for item in arg)
        return all(results) if op == "and" else any(results)
    if op == "equal":
        if not isinstance(arg, list) or not arg:
            raise ExpressionError("'equal' needs a non-empty list")
        first = arg[0]
        return all(type_class(v) == type_class(first) and v == first for v in arg[1:])
    return _evaluate_matches(arg)


def _evaluate_matches(arg: Any) -> bool:
    if not isinstance(arg, dict) or set(arg) != {"pattern", "value"}:
        raise ExpressionError("'matches' needs exactly the keys 'pattern' and 'value'")
    pattern, value = arg["pattern"], arg["value"]
    if not isinstance(pattern, str):
        raise ExpressionError("'matches' pattern must be a string")
    if value is None:
        return False
    return full_match(pattern, value if isinstance(value, str) else _scalar_text(value))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
