"""YAML loading with source positions and bounded alias expansion.

The C parser (libyaml) composes the node graph; we construct plain Python values from it, keeping
the position of every mapping key and sequence item so later stages can report
``file:line:column``.  Aliases share the constructed object (no copying), and the *expanded* size
of the document is bounded so that alias bombs are rejected instead of exhausting memory later.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, ConfigInvalid, Diagnostics, Location

MAX_EXPANDED_NODES = 2_000_000
MAX_NESTING_DEPTH = 400

Pos = tuple[int, int]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_TEXT_TAGS = frozenset({_STR, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"})


class YMap(dict[str, Any]):
    """A mapping that remembers where each key appeared in its source file.

    ``templated`` is False when no string inside (keys included) contains ``<<``, so
    substitution can skip the whole subtree; maps not built by the loader say True.
    """

    __slots__ = ("file", "pos", "key_pos", "templated")

    def __init__(self, file: str = "", pos: Pos = (0, 0)) -> None:
        super().__init__()
        self.file = file
        self.pos = pos
        self.key_pos: dict[str, Pos] = {}
        self.templated = True

    def loc(self, key: str | None = None) -> Location | None:
        """Location of ``key`` (or of the mapping itself)."""
        pos = self.key_pos.get(key, self.pos) if key is not None else self.pos
        if not self.file or pos == (0, 0):
            return None
        return Location(self.file, pos[0], pos[1])

    def derive(self) -> YMap:
        """An empty map with the same source positions (used when transforming a map)."""
        out = YMap(self.file, self.pos)
        out.key_pos = self.key_pos
        out.templated = self.templated
        return out


class YList(list[Any]):
    """A sequence that remembers where each item appeared in its source file."""

    __slots__ = ("file", "pos", "item_pos", "templated")

    def __init__(self, file: str = "", pos: Pos = (0, 0)) -> None:
        super().__init__()
        self.file = file
        self.pos = pos
        self.item_pos: list[Pos] = []
        self.templated = True

    def loc(self, index: int | None = None) -> Location | None:
        """Location of item ``index`` (or of the sequence itself)."""
        pos = self.pos
        if index is not None and 0 <= index < len(self.item_pos):
            pos = self.item_pos[index]
        if not self.file or pos == (0, 0):
            return None
        return Location(self.file, pos[0], pos[1])

    def derive(self) -> YList:
        out = YList(self.file, self.pos)
        out.item_pos = self.item_pos
        out.templated = self.templated
        return out


class YFloat(float):
    """A float that keeps the text it was written as (so ``1.10`` stays ``1.10`` in names/output)."""

    text: str

    def __new__(cls, value: float, text: str) -> YFloat:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[type[YFloat], tuple[float, str]]:
        # A compiled config crosses a process boundary (the server compiles in worker processes).
        return (YFloat, (float(self), self.text))

    def __repr__(self) -> str:
        return self.text


def loc_of(container: Any, key: Any = None) -> Location | None:
    """Location of ``container[key]`` if the container came from a source file."""
    if isinstance(container, YMap):
        return container.loc(key if isinstance(key, str) else None)
    if isinstance(container, YList):
        return container.loc(key if isinstance(key, int) else None)
    return None


_CParser: Any = yaml.cyaml.CParser  # type: ignore[attr-defined]
_Composer: Any = yaml.composer.Composer


class _LenientComposer(_Composer):  # type: ignore[misc]
    """Composer that lets an anchor name be redefined (later aliases see the newest definition)."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.events.AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            node: Node = self.anchors[event.anchor]
            return node
        event = self.peek_event()
        anchor = event.anchor
        self.descend_resolver(parent, index)
        if self.check_event(yaml.events.ScalarEvent):
            node = self.compose_scalar_node(anchor)
        elif self.check_event(yaml.events.SequenceStartEvent):
            node = self.compose_sequence_node(anchor)
        else:
            node = self.compose_mapping_node(anchor)
        self.ascend_resolver()
        return node


_ComposerBase: Any = _LenientComposer
_ResolverBase: Any = yaml.resolver.Resolver


class _LenientCLoader(_ComposerBase, _CParser, _ResolverBase):  # type: ignore[misc]
    """libyaml events, Python composition (only used when the fast path meets a reused anchor)."""

    def __init__(self, stream: str) -> None:
        _CParser.__init__(self, stream)
        _LenientComposer.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_scalar_constructor = yaml.constructor.SafeConstructor()


def _compose(text: str) -> Node | None:
    try:
        loader = yaml.CSafeLoader(text)
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.composer.ComposerError as exc:
        if "duplicate anchor" not in f"{exc.context} {exc.problem}":
            raise
    lenient = _LenientCLoader(text)
    try:
        node: Node | None = lenient.get_single_node()
        return node
    finally:
        lenient.dispose()


class _Builder:
    """Builds YMap/YList/scalars from a composed node graph."""

    def __init__(self, file: str, diag: Diagnostics) -> None:
        self.file = file
        self.diag = diag
        self.memo: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}
        self.in_progress: set[int] = set()
        self.size = 0

    def build(self, node: Node, depth: int = 0) -> Any:
        """Construct ``node``; an aliased node is built once and shared.  ``self.size`` is the
        node count with every alias expanded (checked against MAX_EXPANDED_NODES)."""
        key = id(node)
        if key in self.memo:
            self.add_size(self.sizes[key])
            return self.memo[key]
        if key in self.in_progress:
            raise _RecursiveAlias(node)
        if depth > MAX_NESTING_DEPTH:
            raise _TooDeep(node)
        self.in_progress.add(key)
        before = self.size
        self.add_size(1)
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
        elif isinstance(node, SequenceNode):
            value = self.sequence(node, depth)
        else:
            assert isinstance(node, MappingNode)
            value = self.mapping(node, depth)
        self.in_progress.discard(key)
        self.memo[key] = value
        self.sizes[key] = self.size - before
        return value

    def add_size(self, amount: int) -> None:
        self.size += amount
        if self.size > MAX_EXPANDED_NODES:
            raise _AliasBomb(None)

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return _scalar_constructor.construct_yaml_bool(node)
        if tag == _INT:
            return _scalar_constructor.construct_yaml_int(node)
        if tag == _FLOAT:
            return YFloat(_scalar_constructor.construct_yaml_float(node), node.value)
        if tag == _MERGE:
            return node.value
        raise _UnsupportedTag(node)

    def sequence(self, node: SequenceNode, depth: int) -> YList:
        if node.tag not in (_SEQ,):
            raise _UnsupportedTag(node)
        mark = node.start_mark
        out = YList(self.file, (mark.line + 1, mark.column + 1))
        for item in node.value:
            out.append(self.build(item, depth + 1))
            m = item.start_mark
            out.item_pos.append((m.line + 1, m.column + 1))
        out.templated = any(_is_templated(v) for v in out)
        return out

    def mapping(self, node: MappingNode, depth: int) -> YMap:
        if node.tag not in (_MAP,):
            raise _UnsupportedTag(node)
        mark = node.start_mark
        out = YMap(self.file, (mark.line + 1, mark.column + 1))
        merged: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self.merge_sources(value_node, depth))
                continue
            key = self.key_text(key_node)
            if key in out.key_pos:
                self.diag.error(
                    f"duplicate key '{key}' (first defined on line {out.key_pos[key][0]})",
                    "",
                    Location(self.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                )
            out[key] = self.build(value_node, depth + 1)
            out.key_pos[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        for source in merged:
            for key, value in source.items():
                if key not in out:
                    out[key] = value
                    out.key_pos[key] = source.key_pos.get(key, source.pos)
        out.templated = any("<<" in k or _is_templated(v) for k, v in out.items())
        return out

    def merge_sources(self, node: Node, depth: int) -> list[YMap]:
        """Maps named by a ``<<`` merge key, in precedence order."""
        value = self.build(node, depth + 1)
        sources = value if isinstance(value, YList) else [value]
        maps = [s for s in sources if isinstance(s, YMap)]
        if len(maps) != len(sources):
            raise _BadMerge(node)
        return maps

    @staticmethod
    def key_text(node: Node) -> str:
        if isinstance(node, ScalarNode):
            return str(node.value)
        raise _BadKey(node)


def _is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "<<" in value
    if isinstance(value, YMap | YList):
        return value.templated
    return False


class _LoadProblem(Exception):
    message = ""

    def __init__(self, node: Node | None) -> None:
        super().__init__(self.message)
        self.node = node


class _AliasBomb(_LoadProblem):
    message = f"document expands to more than {MAX_EXPANDED_NODES} nodes (alias expansion limit)"


class _RecursiveAlias(_LoadProblem):
    message = "recursive YAML alias"


class _TooDeep(_LoadProblem):
    message = f"YAML nesting deeper than {MAX_NESTING_DEPTH} levels"


class _UnsupportedTag(_LoadProblem):
    message = "unsupported YAML tag"


class _BadMerge(_LoadProblem):
    message = "a '<<' merge key needs a mapping or a list of mappings"


class _BadKey(_LoadProblem):
    message = "mapping keys must be scalars"


def load_yaml(text: str, file: str) -> Any:
    """Parse one YAML document into YMap/YList/scalars.

    Raises ConfigInvalid (with located errors) for syntax errors, reused-anchor problems,
    alias bombs, duplicate keys and unsupported tags.  An empty document returns None.
    """
    diag = Diagnostics()
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigInvalid([_yaml_error(problem, loc)]) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigInvalid([_yaml_error(str(exc) or "invalid YAML", None)]) from None
    if node is None:
        return None
    builder = _Builder(file, diag)
    try:
        value = builder.build(node)
    except _LoadProblem as exc:
        culprit: Node = exc.node if exc.node is not None else node
        mark = culprit.start_mark
        extra = f" {culprit.tag!r}" if isinstance(exc, _UnsupportedTag) else ""
        loc = Location(file, mark.line + 1, mark.column + 1)
        raise ConfigInvalid([_yaml_error(exc.message + extra, loc)]) from None
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise ConfigInvalid([_yaml_error(str(exc), None)]) from None
    diag.raise_if_errors()
    return value


def _yaml_error(problem: str, loc: Location | None) -> ConfigError:
    return ConfigError(f"YAML error: {problem}", "", loc)
