"""Deterministic YAML output of the processed config (SEMANTICS R-14.1)."""

from __future__ import annotations

from typing import Any, Protocol

import yaml

from .loader import YFloat

PROCESSED_MARKER = "# Original config.yml file:"
_ORB_HEADER = "# Orb '"


class CompiledResult(Protocol):
    """What rendering reads of a ``CompiledConfig`` (structural, so that this module, which
    ``CompiledConfig.to_yaml`` calls, does not import it back)."""

    @property
    def processed(self) -> dict[str, Any]: ...
    @property
    def source(self) -> str: ...
    @property
    def orb_resolutions(self) -> list[tuple[str, str]]: ...


class _Ordered(dict[str, Any]):
    """A map whose key order is meaningful (top level, jobs, workflows): not sorted."""


_CSafeDumper: Any = yaml.CSafeDumper


class _Dumper(_CSafeDumper):  # type: ignore[misc]
    """C emitter, with representers for our types and block style for multi-line strings."""


def _represent_str(dumper: Any, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    node: yaml.ScalarNode = dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


def _represent_yfloat(dumper: Any, value: YFloat) -> yaml.ScalarNode:
    node: yaml.ScalarNode = dumper.represent_scalar("tag:yaml.org,2002:float", value.text)
    return node


def _represent_map(dumper: Any, value: dict[str, Any]) -> yaml.MappingNode:
    node: yaml.MappingNode = dumper.represent_dict(value.items())
    return node


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(YFloat, _represent_yfloat)
_Dumper.add_multi_representer(dict, _represent_map)
_Dumper.add_multi_representer(list, lambda d, v: d.represent_list(v))


def canonical(value: Any) -> Any:
    """Sort map keys (except in _Ordered maps) and turn YAML-tracking types into plain ones."""
    if isinstance(value, _Ordered):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, dict):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def dump_yaml(value: Any) -> str:
    text: str = yaml.dump(
        canonical(value), Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True, width=1_000_000
    )
    return text


def processed_document(compiled: CompiledResult) -> Any:
    processed = compiled.processed
    top = _Ordered()
    top["version"] = processed["version"]
    top["jobs"] = _Ordered(processed["jobs"])
    if "workflows" in processed:
        workflows = processed["workflows"]
        top["workflows"] = _Ordered(workflows)
    return top


def render_processed(compiled: CompiledResult) -> str:
    """Header lines for resolved orbs, the processed YAML, then the original config commented
    out.  A processed config given as input keeps its own header and original (idempotence)."""
    source = compiled.source
    if PROCESSED_MARKER in source:
        header = [line for line in source.splitlines() if line.startswith(_ORB_HEADER)]
        trailer = source[source.index(PROCESSED_MARKER) :].rstrip("\n").splitlines()
    else:
        header = [f"# Orb '{requested}' resolved to '{resolved}'" for requested, resolved in compiled.orb_resolutions]
        trailer = [PROCESSED_MARKER] + [f"# {line}".rstrip() for line in source.splitlines()]
    body = dump_yaml(processed_document(compiled))
    parts = header + [body.rstrip("\n"), ""] + trailer
    return "\n".join(parts) + "\n"
