"""The package map of docs/architecture.md is the code's: the import graph of ``src/circlet``, built with
``ast``, has exactly the edges the doc's "Import rules" table allows, and no cycle.

Every import counts: module level, inside functions, and under ``if TYPE_CHECKING:`` (a type-only
import still couples the two modules: a reader of one must read the other, and a cycle of them is the
kind that turns into a real one the day an annotation is evaluated). A package's query modules
(``repository.py``, ``*_repository.py``) are a node of their own, ``<package>.repository``: services may
use any package's repository (docs/architecture.md), and repositories import nothing but ``db``, so
such an edge can never close a loop. Imports inside one package are not edges between packages; the
module-level graph, where they do count, must have no cycle either.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TABLE_HEADING = "## Import rules"

Graph = dict[str, set[str]]


def module_files(source: Path = SOURCE) -> dict[str, tuple[Path, bool]]:
    """Every module of ``circlet``: its dotted name → (file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in sorted((source / "circlet").rglob("*.py")):
        parts = list(path.relative_to(source).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def imported_modules(name: str, path: Path, is_package: bool, modules: Mapping[str, object]) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its file, relative imports resolved and
    ``from package import module`` taken as an import of that module."""
    found = set()
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def module_graph(source: Path = SOURCE) -> Graph:
    modules = module_files(source)
    return {name: imported_modules(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def node_of(module: str) -> str:
    """The node of the package map a module belongs to: ``circlet.orgs.service`` → ``orgs``,
    ``circlet.orgs.repository`` → ``orgs.repository``, ``circlet.app`` → ``app``, ``circlet`` →
    ``circlet`` (the distribution's root: its version)."""
    parts = module.split(".")[1:]
    if not parts:
        return "circlet"
    if len(parts) > 1 and (parts[-1] == "repository" or parts[-1].endswith("_repository")):
        return f"{parts[0]}.repository"
    return parts[0]


def package_graph(modules: Mapping[str, Iterable[str]]) -> Graph:
    graph: Graph = {node_of(name): set() for name in modules}
    for name, targets in modules.items():
        source = node_of(name)
        for target in targets:
            node = node_of(target)
            if node.split(".")[0] != source.split(".")[0]:
                graph[source].add(node)
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def allowed_edges(document: str) -> Graph:
    """The doc's "Import rules" table: ``| `package` | `a`, `b` ... | why |`, one row per node; the
    second cell's backticked names are what it may import (none: nothing of ours)."""
    section = document.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    rules: Graph = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        (name,) = re.findall(r"`([^`]+)`", cells[0])
        assert name not in rules, f"{name} has two rows in {TABLE_HEADING}"
        rules[name] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rules


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_repositories_are_nodes_of_their_own_and_inner_imports_no_edges() -> None:
    modules = {
        "circlet.orgs.service": {"circlet.users.repository", "circlet.orgs.repository"},
        "circlet.orgs.repository": {"circlet.orgs.slugs", "circlet.db.models"},
        "circlet.orgs.slugs": set(),
        "circlet.users.repository": {"circlet.db.models"},
        "circlet.db.models": set(),
    }
    assert package_graph(modules) == {
        "orgs": {"users.repository"},
        "orgs.repository": {"db"},
        "users.repository": {"db"},
        "db": set(),
    }


def test_every_import_edge_is_one_the_architecture_allows() -> None:
    graph = package_graph(module_graph())
    rules = allowed_edges(ARCHITECTURE.read_text())
    unlisted = sorted(set(graph) - set(rules))
    assert not unlisted, f"docs/architecture.md has no row for {unlisted}"
    gone = sorted(set(rules) - set(graph))
    assert not gone, f"docs/architecture.md has rows for what is no more: {gone}"
    forbidden = sorted(f"{node} -> {target}" for node, targets in graph.items() for target in targets - rules[node])
    assert not forbidden, f"imports the table does not allow (change the code, or the table): {forbidden}"
    stale = sorted(f"{node} -> {target}" for node, targets in rules.items() for target in targets - graph[node])
    assert not stale, f"edges the table allows that no code uses (remove them so the map stays true): {stale}"


def test_no_cycle_between_packages() -> None:
    assert cycles(package_graph(module_graph())) == []


def test_no_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []
