"""The local orb registry (SEMANTICS R-12.5): resolution of orb references, import, listing and
packing of orb source trees."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigInvalid
from .loader import YMap, load_yaml

_REGISTRY_REF = re.compile(r"([a-z0-9][a-z0-9_-]*)/([a-z0-9][a-z0-9_-]*)@(\S+)", re.IGNORECASE)
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_PARTIAL = re.compile(r"(\d+)(?:\.(\d+))?")
_ORB_FILE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)@(?P<version>.+)\.ya?ml")
_INCLUDE = re.compile(r"<<\s*include\(\s*([^)]*?)\s*\)\s*>>")


def default_orb_dirs() -> list[Path]:
    """``$CIRCLET_HOME/orbs`` (CIRCLET_HOME defaults to ``~/.circlet``) plus ``CIRCLET_ORB_DIRS``
    (``os.pathsep``-separated)."""
    home = Path(os.environ.get("CIRCLET_HOME") or Path.home() / ".circlet")
    dirs = [home / "orbs"]
    extra = os.environ.get("CIRCLET_ORB_DIRS", "")
    dirs.extend(Path(p) for p in extra.split(os.pathsep) if p)
    return dirs


@dataclass(frozen=True)
class OrbRef:
    """A parsed registry reference ``namespace/name@version``."""

    namespace: str
    name: str
    version: str

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.full_name}@{self.version}"


def parse_orb_ref(text: str) -> OrbRef | None:
    match = _REGISTRY_REF.fullmatch(text.strip())
    if match is None:
        return None
    return OrbRef(match.group(1), match.group(2), match.group(3))


@dataclass(frozen=True)
class ResolvedOrb:
    requested: str
    resolved: str
    path: Path


def _semver_key(version: str) -> tuple[int, int, int] | None:
    match = _SEMVER.fullmatch(version)
    if match is None:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


class OrbNotFound(Exception):
    """An orb reference that the local registry cannot satisfy; the message says what was tried."""


class OrbRegistry:
    """A set of directories holding packed orbs as ``<namespace>/<name>@<version>.yml``."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = roots

    def versions(self, ref: OrbRef) -> dict[str, Path]:
        """Every locally available version of the orb (first root wins for duplicates)."""
        found: dict[str, Path] = {}
        for root in self.roots:
            folder = root / ref.namespace
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                match = _ORB_FILE.fullmatch(entry.name)
                if match and match.group("name") == ref.name:
                    found.setdefault(match.group("version"), entry)
        return found

    def resolve(self, ref: OrbRef) -> ResolvedOrb:
        available = self.versions(ref)
        chosen = _choose_version(ref.version, available)
        if chosen is None:
            raise OrbNotFound(self._not_found_message(ref, available))
        return ResolvedOrb(str(ref), f"{ref.full_name}@{chosen}", available[chosen])

    def resolve_url(self, url: str) -> ResolvedOrb:
        """URL orbs come from a cache file keyed by the URL (never fetched by the compiler)."""
        digest = hashlib.sha256(url.encode()).hexdigest()[:32]
        for root in self.roots:
            path = root / "_url" / f"{digest}.yml"
            if path.is_file():
                return ResolvedOrb(url, url, path)
        raise OrbNotFound(
            f"URL orb '{url}' is not in the local orb cache (expected a file _url/{digest}.yml in {self._roots_text()})"
        )

    def _roots_text(self) -> str:
        return ", ".join(str(r) for r in self.roots) or "(no orb directories)"

    def _not_found_message(self, ref: OrbRef, available: dict[str, Path]) -> str:
        versions = sorted(available, key=lambda v: _semver_key(v) or (-1, -1, -1))
        listing = f"available: {', '.join(versions)}" if versions else "no version of it is available"
        return (
            f"unknown orb '{ref}' (looked in {self._roots_text()}; {listing}); add it with "
            f"'circlet orb import <packed-orb.yml>' or pass --orb-dir"
        )

    def all_orbs(self) -> list[tuple[str, Path]]:
        """``(namespace/name@version, path)`` for every orb in the registry, sorted."""
        seen: dict[str, Path] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "_url"):
                for entry in sorted(folder.iterdir()):
                    match = _ORB_FILE.fullmatch(entry.name)
                    if match:
                        key = f"{folder.name}/{match.group('name')}@{match.group('version')}"
                        seen.setdefault(key, entry)
        return sorted(seen.items(), key=lambda item: _listing_key(item[0]))


def _listing_key(ref_text: str) -> tuple[str, tuple[int, int, int], str]:
    name, _, version = ref_text.partition("@")
    return (name, _semver_key(version) or (-1, -1, -1), version)


def _choose_version(requested: str, available: dict[str, Path]) -> str | None:
    """CircleCI's rules: exact ``X.Y.Z``; newest ``X.Y.*`` for ``X.Y``; newest ``X.*.*`` for ``X``;
    newest for ``volatile``; ``dev:LABEL`` only as itself."""
    if requested in available and requested != "volatile":
        return requested
    if requested.startswith("dev:"):
        return None
    releases = {v: k for v in available if (k := _semver_key(v)) is not None}
    if requested == "volatile":
        candidates = list(releases)
    else:
        partial = _PARTIAL.fullmatch(requested)
        if partial is None:
            return None
        major = int(partial.group(1))
        minor = int(partial.group(2)) if partial.group(2) is not None else None
        candidates = [v for v, k in releases.items() if k[0] == major and (minor is None or k[1] == minor)]
    if not candidates:
        return None
    return max(candidates, key=lambda v: releases[v])


_orb_cache: dict[Path, tuple[int, int, Any]] = {}


def load_orb_file(path: Path, display_name: str) -> Any:
    """Parse a packed orb file; parsed orbs are cached by path, size and modification time."""
    stat = path.stat()
    cached = _orb_cache.get(path)
    if cached is not None and cached[0] == stat.st_mtime_ns and cached[1] == stat.st_size:
        return cached[2]
    text = path.read_text(encoding="utf-8", errors="replace")
    value = load_yaml(text, display_name)
    _orb_cache[path] = (stat.st_mtime_ns, stat.st_size, value)
    return value


# --- import / pack -------------------------------------------------------------------------------


def import_orbs(source: Path, registry_root: Path, as_ref: str | None = None) -> list[str]:
    """Copy packed orbs into ``registry_root``.

    ``source`` is a packed orb file (named ``<name>@<version>.yml`` inside a folder named after
    its namespace, or given an explicit ``as_ref``) or a registry-shaped directory.  Each file is
    checked to be a YAML map first.  Returns the imported references.
    """
    if source.is_dir():
        if as_ref:
            raise ValueError("--as can only be used when importing a single file")
        files = sorted(p for p in source.rglob("*.y*ml") if _ORB_FILE.fullmatch(p.name))
        if not files:
            raise ValueError(f"no packed orbs (<namespace>/<name>@<version>.yml) under {source}")
        return [_import_file(f, _ref_from_path(f), registry_root) for f in files]
    if not source.is_file():
        raise ValueError(f"{source} does not exist")
    ref = parse_orb_ref(as_ref) if as_ref else _ref_from_path(source)
    if ref is None:
        raise ValueError(f"'{as_ref}' is not an orb reference of the form namespace/name@version")
    return [_import_file(source, ref, registry_root)]


def _ref_from_path(path: Path) -> OrbRef:
    match = _ORB_FILE.fullmatch(path.name)
    if match is None or not path.parent.name:
        raise ValueError(
            f"cannot tell the orb name from '{path}': name it "
            "<namespace>/<name>@<version>.yml or pass --as namespace/name@version"
        )
    return OrbRef(path.parent.name, match.group("name"), match.group("version"))


def _import_file(path: Path, ref: OrbRef, registry_root: Path) -> str:
    if _semver_key(ref.version) is None and not ref.version.startswith("dev:"):
        raise ValueError(f"orb version '{ref.version}' must be X.Y.Z or dev:LABEL")
    try:
        content = load_yaml(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except ConfigInvalid as exc:
        raise ValueError(f"{path} is not a valid orb: {exc}") from None
    if not isinstance(content, YMap):
        raise ValueError(f"{path} is not a valid orb: it must be a YAML map")
    target = registry_root / ref.namespace / f"{ref.name}@{ref.version}.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return str(ref)


def pack_orb(source_dir: Path) -> dict[str, Any]:
    """Pack an orb source tree as ``circleci orb pack`` does (see SOURCES.md).

    ``source_dir`` is the orb's ``src/`` folder or the repository root containing it.
    Raises ValueError (with file:line:column for YAML problems) when it cannot be packed.
    """
    src = source_dir / "src" if (source_dir / "src").is_dir() else source_dir
    for single in (src / "orb.yml", source_dir / "orb.yml"):
        if single.is_file() and not (src / "@orb.yml").is_file():
            loaded = _load_source_yaml(single)
            if not isinstance(loaded, dict):
                raise ValueError(f"{single}: an orb must be a YAML map")
            return loaded
    if not (src / "@orb.yml").is_file():
        raise ValueError(f"{src} has no @orb.yml (nor a single orb.yml)")
    packed = _pack_directory(src, src, top=True)
    for section in ("jobs", "commands", "executors"):
        if isinstance(packed.get(section), dict):
            packed[section] = _expand_includes(packed[section], src)
    return packed


def _load_source_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text(encoding="utf-8"), str(path))
    except ConfigInvalid as exc:
        raise ValueError(str(exc)) from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None


def _pack_directory(folder: Path, src: Path, *, top: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {}
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for entry in entries:
        if entry.is_file() and entry.suffix in (".yml", ".yaml") and entry.name.startswith("@"):
            loaded = _load_source_yaml(entry)
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"{entry}: must be a YAML map")
            result.update(loaded or {})
    for entry in entries:
        if entry.name.startswith("@"):
            continue
        if entry.is_file() and entry.suffix in (".yml", ".yaml"):
            result[entry.stem] = _load_source_yaml(entry)
        elif entry.is_dir() and _has_yaml(entry):
            result[entry.name] = _pack_directory(entry, src)
    return result


def _has_yaml(folder: Path) -> bool:
    return any(p.suffix in (".yml", ".yaml") and not p.name.startswith(".") for p in folder.rglob("*"))


def _expand_includes(value: Any, src: Path) -> Any:
    if isinstance(value, str):
        return _INCLUDE.sub(lambda m: _read_include(src, m.group(1)), value)
    if isinstance(value, dict):
        return {k: _expand_includes(v, src) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_includes(v, src) for v in value]
    return value


def _read_include(src: Path, relative: str) -> str:
    path = (src / relative).resolve()
    if not path.is_file():
        raise ValueError(f"include file not found: {relative} (relative to {src})")
    return path.read_text(encoding="utf-8").replace("<<", "\\<<")
