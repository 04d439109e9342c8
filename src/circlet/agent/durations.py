"""CircleCI durations (``no_output_timeout``, ``--time-default``), in a module of their own so the
job's helpers can use them without loading the agent."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """A CircleCI duration (``10m``, ``30s``, ``1h30m``, ``1.5h``; a bare number is seconds)."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not text or _DURATION.sub("", text):
        raise ValueError(f"not a duration: {text!r} (expected e.g. 10m, 30s, 1h)")
    return sum(float(number) * _UNITS[unit] for number, unit in _DURATION.findall(text))
