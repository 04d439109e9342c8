"""JUnit XML to test result rows, parsed as a stream with ``xml.etree.ElementTree`` and no tree kept:
each ``feed`` hands back the rows it completed, so memory is bounded by one test case (every field
truncated), whatever the file's size. Documents with a DOCTYPE are refused
(no entity declarations, so no entity expansion bombs or external entities)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 64 * 1024
MAX_CASES = 100_000
MAX_FIELD = 1024


class JUnitError(Exception):
    """The document is not JUnit XML circlet accepts; the message says why."""


def _number(value: str | None) -> float:
    try:
        seconds = float(value or 0)
    except ValueError:
        return 0.0
    return seconds if 0 <= seconds < 1e9 else 0.0


@dataclass
class _Target:
    """An ElementTree parser target: collects ``<testcase>`` rows as elements end."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    _suite_files: list[str | None] = field(default_factory=list)
    _case: dict[str, Any] | None = None
    _text: list[str] | None = None
    _text_size: int = 0

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise JUnitError("DOCTYPE declarations are not accepted in test results")

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "testsuite":
            self._suite_files.append(attrs.get("file") or (self._suite_files[-1] if self._suite_files else None))
        elif tag == "testcase":
            if self.count >= MAX_CASES:
                raise JUnitError(f"more than {MAX_CASES} test cases in one file")
            suite_file = self._suite_files[-1] if self._suite_files else None
            self._case = {
                "name": attrs.get("name", "")[:MAX_FIELD],
                "classname": attrs.get("classname", "")[:MAX_FIELD],
                "file": (attrs.get("file") or suite_file or None),
                "run_time": _number(attrs.get("time")),
                "result": "success",
                "message": None,
            }
        elif self._case is not None and tag in ("failure", "error", "skipped"):
            self._case["result"] = "skipped" if tag == "skipped" else "failure"
            message = attrs.get("message")
            self._case["message"] = message[:MAX_TEXT] if message is not None else None
            self._text, self._text_size = [], 0

    def end(self, tag: str) -> None:
        if tag == "testsuite" and self._suite_files:
            self._suite_files.pop()
        elif tag == "testcase" and self._case is not None:
            if self._case["file"]:
                self._case["file"] = str(self._case["file"])[:MAX_FIELD]
            self.rows.append(self._case)
            self.count += 1
            self._case = None
        elif tag in ("failure", "error", "skipped") and self._case is not None and self._text is not None:
            text = "".join(self._text).strip()
            if text:
                self._case["message"] = text
            self._text = None

    def data(self, text: str) -> None:
        if self._text is not None and self._text_size < MAX_TEXT:
            self._text.append(text[: MAX_TEXT - self._text_size])
            self._text_size += len(text)

    def close(self) -> None:
        return None


class JUnitParser:
    """Feed bytes as they arrive; each call returns the test cases it completed, ``close()`` the last."""

    def __init__(self) -> None:
        self._target = _Target()
        self._parser = ET.XMLParser(target=self._target)
        self._fed = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._fed = self._fed or bool(data)
        try:
            self._parser.feed(data)
        except ET.ParseError as exc:
            raise JUnitError(f"not well-formed XML: {exc}") from None
        return self._completed()

    def _completed(self) -> list[dict[str, Any]]:
        rows, self._target.rows = self._target.rows, []
        return rows

    def close(self) -> list[dict[str, Any]]:
        if not self._fed:
            raise JUnitError("the file is empty")
        try:
            self._parser.close()
        except ET.ParseError as exc:
            raise JUnitError(f"not well-formed XML: {exc}") from None
        return self._completed()
