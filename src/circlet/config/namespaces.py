"""Element namespaces: the project's and each orb's commands, executors, jobs and imported orbs
(SEMANTICS R-12.2), with ``alias/element`` lookup."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .errors import Diagnostics, Location
from .loader import YMap

ELEMENT_KINDS = ("commands", "executors", "jobs")
_MAX_ALIAS_HOPS = 20


@dataclass(eq=False)
class Namespace:
    """One scope of reusable elements.

    A ``broken`` namespace stands in for an orb that could not be loaded; ``problem`` says why
    when it has not been reported yet (orbs imported by orbs are only reported when used).

    ``label`` is the dotted config path of the scope (``""`` for the project, ``orbs.node`` for
    an orb imported as ``node``); ``in_orb`` hides pipeline parameters from its templates.
    """

    label: str
    in_orb: bool
    commands: dict[str, Any] = field(default_factory=dict)
    executors: dict[str, Any] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    orbs: dict[str, Namespace] = field(default_factory=dict)
    broken: bool = False
    problem: str = ""

    @classmethod
    def from_body(cls, body: YMap, label: str, in_orb: bool) -> Namespace:
        ns = cls(label, in_orb)
        for kind in ELEMENT_KINDS:
            section = body.get(kind)
            if isinstance(section, dict):
                setattr(ns, kind, section)
        return ns

    def path_of(self, kind: str, name: str) -> str:
        prefix = f"{self.label}." if self.label else ""
        return f"{prefix}{kind}.{name}"

    def section(self, kind: str) -> dict[str, Any]:
        section: dict[str, Any] = getattr(self, kind)
        return section

    def find(self, kind: str, ref: str) -> tuple[Any, Namespace, str] | None:
        """Find ``ref`` (``name`` or ``alias/name``); returns (definition, home namespace,
        local name).  Orb job aliases (``jobs: {mine: other/theirs}``) are followed.  A key that
        itself contains ``/`` (a processed config's ``node/test``) matches literally first."""
        literal = self.section(kind).get(ref) if "/" in ref else None
        if literal is not None:
            return literal, self, ref
        ns: Namespace = self
        name = ref
        for _ in range(_MAX_ALIAS_HOPS):
            while "/" in name:
                alias, name = name.split("/", 1)
                inner = ns.orbs.get(alias)
                if inner is None:
                    return None
                ns = inner
            definition = ns.section(kind).get(name)
            if definition is None:
                return None
            if kind == "jobs" and isinstance(definition, str) and "/" in definition:
                name = definition
                continue
            return definition, ns, name
        return None

    def broken_orb(self, ref: str) -> Namespace | None:
        """The orb that failed to load if ``ref`` goes through one, else None."""
        ns: Namespace | None = self
        for alias in ref.split("/")[:-1]:
            ns = ns.orbs.get(alias) if ns is not None else None
            if ns is None:
                return None
            if ns.broken:
                return ns
        return None

    def candidates(self, kind: str) -> list[str]:
        """Every name this scope can refer to for ``kind`` (for did-you-mean hints)."""
        names = [str(n) for n in self.section(kind)]
        for alias, inner in self.orbs.items():
            names.extend(f"{alias}/{n}" for n in inner.section(kind))
        return names


def did_you_mean(name: str, candidates: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a close candidate exists, else empty."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def report_broken_orb(ns: Namespace, ref: str, diag: Diagnostics, path: str, loc: Location | None) -> bool:
    """If ``ref`` goes through an orb that failed to load, report that (once, at this first use,
    for orbs imported by orbs) and return True; else False."""
    broken = ns.broken_orb(ref)
    if broken is None:
        return False
    if broken.problem:
        diag.error(f"'{ref}' needs an orb that could not be loaded: {broken.problem}", path, loc)
        broken.problem = ""
    return True
