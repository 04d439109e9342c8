"""Every real-world config in the shared corpus compiles, or fails with located, explained errors.
A config whose orbs are all in the shared registry compiles (the registry also holds the orbs
that those orbs import); the others fail only with an error naming each of their missing orbs.
KNOWN_INVALID lists configs CircleCI refuses too."""

from __future__ import annotations

from pathlib import Path

import pytest

from circlet.config import ConfigInvalid, compile_config, fabricated_values
from circlet.config.loader import load_yaml
from circlet.config.orbs import OrbNotFound, OrbRegistry, parse_orb_ref

from .conftest import shared_config_dir

KNOWN_INVALID = {
    "0134.yml": ["config is empty"],
    "0191.yml": [
        "unknown step 'store-test-results' (did you mean 'store_test_results'?)",
        "unknown step 'store-artifacts' (did you mean 'store_artifacts'?)",
    ],
}
CORPUS = sorted((shared_config_dir() / "corpus").glob("*.yml"))


def _compile(shared_dir: Path, path: Path, source: str | None = None) -> str:
    compiled = compile_config(
        path.read_text() if source is None else source,
        filename=path.name,
        pipeline_values=fabricated_values(),
        orb_dirs=[shared_dir / "orbs"],
    )
    return compiled.to_yaml()


def test_corpus_is_present(shared_dir: Path) -> None:
    assert len(CORPUS) >= 100


def _missing_orbs(shared_dir: Path, path: Path) -> set[str]:
    """The aliases of the config's own orbs that the shared registry cannot resolve."""
    document = load_yaml(path.read_text(), path.name)
    orbs = document.get("orbs") if isinstance(document, dict) else None
    registry = OrbRegistry([shared_dir / "orbs"])
    missing = set()
    for alias, text in (orbs or {}).items():
        ref = parse_orb_ref(text) if isinstance(text, str) else None
        if ref is None:
            continue
        try:
            registry.resolve(ref)
        except OrbNotFound:
            missing.add(alias)
    return missing


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_config(shared_dir: Path, path: Path) -> None:
    missing = set() if path.name in KNOWN_INVALID else _missing_orbs(shared_dir, path)
    try:
        output = _compile(shared_dir, path)
    except ConfigInvalid as exc:
        messages = [e.message for e in exc.errors]
        assert all(e.location is not None for e in exc.errors)
        if path.name in KNOWN_INVALID:
            assert messages == KNOWN_INVALID[path.name]
        else:
            assert missing, f"every orb of {path.name} is in the registry, so it must compile"
            assert all("unknown orb '" in m for m in messages), messages
            assert {e.path.removeprefix("orbs.") for e in exc.errors} == missing
        return
    assert path.name not in KNOWN_INVALID
    assert not missing
    assert _compile(shared_dir, path) == output, "output must be deterministic"
    assert _compile(shared_dir, path, output) == output, "output must be a fixed point"


def test_most_of_the_corpus_compiles(shared_dir: Path) -> None:
    compiled = 0
    for path in CORPUS:
        try:
            _compile(shared_dir, path)
            compiled += 1
        except ConfigInvalid:
            continue
    assert compiled >= 72
