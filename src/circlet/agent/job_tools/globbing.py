"""``circleci tests glob``: shell-style patterns with ``**`` and ``{a,b}``, matched against the files
and directories under the current directory (or under an absolute pattern's root).

As in a shell, ``*``, ``?`` and ``[...]`` never match ``/`` nor a leading ``.`` of a name (so
``**/*`` does not list ``.git``); ``**`` as a whole path component matches any number of
directories, zero included; elsewhere it is a ``*``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

WILDCARDS = frozenset("*?[")


def expand_braces(pattern: str) -> list[str]:
    """``a{b,c{d,e}}f`` → ``abf``, ``acdf``, ``acef``. A brace without a matching close or without a
    comma at its level is literal."""
    start = pattern.find("{")
    while start != -1:
        alternatives, end = _brace_alternatives(pattern, start)
        if alternatives is not None:
            head, tail = pattern[:start], pattern[end + 1 :]
            return [expanded for choice in alternatives for expanded in expand_braces(head + choice + tail)]
        start = pattern.find("{", start + 1)
    return [pattern]


def _brace_alternatives(pattern: str, start: int) -> tuple[list[str] | None, int]:
    """The comma-separated alternatives of the brace group opening at ``start``, and where it closes."""
    depth, piece_start, pieces = 0, start + 1, []
    for position in range(start, len(pattern)):
        character = pattern[position]
        if character == "{":
            depth += 1
        elif character == "}":
            depth -= 1
            if depth == 0:
                pieces.append(pattern[piece_start:position])
                return (pieces if len(pieces) > 1 else None), position
        elif character == "," and depth == 1:
            pieces.append(pattern[piece_start:position])
            piece_start = position + 1
    return None, start


def component_regex(component: str) -> str:
    """One path component (no ``/``) as a regular expression."""
    out = [] if component.startswith(".") else [r"(?!\.)"]
    position = 0
    while position < len(component):
        character = component[position]
        if character == "*":
            while position + 1 < len(component) and component[position + 1] == "*":
                position += 1
            out.append("[^/]*")
        elif character == "?":
            out.append("[^/]")
        elif character == "[" and (close := _class_end(component, position)) != -1:
            body = component[position + 1 : close]
            negated = body[:1] in ("!", "^")
            body = body[1:] if negated else body
            out.append(("[^/" if negated else "[") + body.replace("\\", "\\\\") + "]")
            position = close
        else:
            out.append(re.escape(character))
        position += 1
    return "".join(out)


def _class_end(component: str, start: int) -> int:
    """Where the ``[...]`` opening at ``start`` closes (a ``]`` right after ``[`` or ``[!`` is literal)."""
    first = start + 2 if component[start + 1 : start + 2] in ("!", "^") else start + 1
    return component.find("]", first + 1)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    components = pattern.split("/")
    for index, component in enumerate(components):
        last = index == len(components) - 1
        if component == "**":
            parts.append(r"(?:(?!\.)[^/]*(?:/|$))*" if last else r"(?:(?!\.)[^/]+/)*")
        else:
            parts.append(component_regex(component) + ("" if last else "/"))
    return re.compile("".join(parts))


def literal_root(pattern: str) -> tuple[str, list[str]]:
    """The leading components without a wildcard (where to start walking) and the rest."""
    components = pattern.split("/")
    for index, component in enumerate(components):
        if WILDCARDS & set(component):
            return "/".join(components[:index]) or ("/" if pattern.startswith("/") else ""), components[index:]
    return pattern, []


def walk(root: str, depth: int | None, hidden: bool) -> Iterator[str]:
    """Every path under ``root`` (``root``-prefixed, or relative when ``root`` is empty), at most
    ``depth`` levels down; hidden directories are entered only when ``hidden``."""
    start = root or "."
    for directory, subdirectories, files in os.walk(start):
        level = 0 if directory == start else directory[len(start) :].strip("/").count("/") + 1
        if not hidden:
            subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        entries = [*subdirectories, *files]
        if depth is not None and level + 1 >= depth:
            subdirectories[:] = []
        for name in entries:
            path = os.path.join(directory, name)
            yield path[2:] if not root else path


def matches(pattern: str) -> Iterator[str]:
    root, rest = literal_root(pattern)
    if not rest:
        if os.path.lexists(pattern):
            yield pattern
        return
    regex = pattern_regex(pattern)
    depth = None if "**" in rest else len(rest)
    hidden = any(component.startswith(".") for component in rest)
    if root and not os.path.isdir(root):
        return
    yield from (path for path in walk(root, depth, hidden) if regex.fullmatch(path))


def glob(patterns: Iterable[str]) -> list[str]:
    """The paths matching any of ``patterns``, sorted, each once."""
    found = {path for pattern in patterns for expanded in expand_braces(pattern) for path in matches(expanded)}
    return sorted(found)
