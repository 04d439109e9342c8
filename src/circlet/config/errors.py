"""Diagnostics: located compile errors, collected rather than raised one at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

from .limits import ExpansionBudget


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a source file; line and column are 1-based."""

    file: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem found in a config, with the config path and source position it comes from."""

    message: str
    path: str = ""
    location: Location | None = None

    def format(self) -> str:
        """Render as ``file:line:column: path: message`` (parts omitted when unknown)."""
        parts: list[str] = []
        if self.location is not None:
            loc = self.location
            parts.append(f"{loc.file}:{loc.line}:{loc.column}")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigInvalid(Exception):
    """Raised when compilation cannot produce a processed config; carries every error found."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("\n".join(e.format() for e in errors))
        self.errors = errors


@dataclass
class Diagnostics:
    """Collects errors and warnings during one compilation, and counts what it has expanded."""

    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)
    budget: ExpansionBudget = field(default_factory=ExpansionBudget)
    _seen: set[tuple[Location, str]] = field(default_factory=set)

    def error(self, message: str, path: str = "", location: Location | None = None) -> None:
        err = ConfigError(message, path, location)
        if location is not None:
            if (location, message) in self._seen:
                return
            self._seen.add((location, message))
        if err not in self.errors:
            self.errors.append(err)

    def warn(self, message: str, path: str = "", location: Location | None = None) -> None:
        warning = ConfigError(message, path, location)
        if warning not in self.warnings:
            self.warnings.append(warning)

    def over_limit(
        self, what: str, count: int, limit: int, setting: str, path: str = "", location: Location | None = None
    ) -> None:
        """Stop the compilation: expanding further could exhaust the server's time or memory."""
        self.error(f"{what} ({count}) exceeds the limit of {limit} ({setting})", path, location)
        self.raise_if_errors()

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ConfigInvalid(sorted(self.errors, key=_error_sort_key))


def _error_sort_key(err: ConfigError) -> tuple[str, int, int, str, str]:
    loc = err.location
    if loc is None:
        return ("", 0, 0, err.path, err.message)
    return (loc.file, loc.line, loc.column, err.path, err.message)
