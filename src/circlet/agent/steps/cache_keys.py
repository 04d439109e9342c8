"""CircleCI's cache key templates, rendered by the runner:

``{{ .Branch }}`` (``CIRCLE_BRANCH``), ``{{ .Revision }}`` (``CIRCLE_SHA1``), ``{{ .BuildNum }}``
(``CIRCLE_BUILD_NUM``), ``{{ .Environment.NAME }}``, ``{{ checksum "FILE" }}`` (base64 of the file's
SHA-256), ``{{ epoch }}`` (seconds since 1970) and ``{{ arch }}`` (``arch1-<os>-<cpu>``, e.g.
``arch1-linux-amd64``). A variable that is not set renders empty, as in CircleCI."""

from __future__ import annotations

import base64
import hashlib
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
CHECKSUM = re.compile(r'^checksum\s+"([^"]+)"$')
ENVIRONMENT = re.compile(r"^\.Environment\.([A-Za-z_][A-Za-z0-9_]*)$")
BUILT_INS = {".Branch": "CIRCLE_BRANCH", ".Revision": "CIRCLE_SHA1", ".BuildNum": "CIRCLE_BUILD_NUM"}
CPUS = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class TemplateError(Exception):
    """A template the runner cannot render; the message is for the step's output."""


def arch() -> str:
    """Deterministic for a host: ``arch1-linux-amd64`` (CircleCI adds a CPU model; we do not)."""
    machine = platform.machine().lower()
    return f"arch1-{sys.platform}-{CPUS.get(machine, machine or 'unknown')}"


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError as exc:
        raise TemplateError(f"checksum: cannot read {path}: {exc.strerror or exc}") from None
    return base64.b64encode(digest.digest()).decode()


def render_key(template: str, environment: Mapping[str, str], resolve: Callable[[str], Path]) -> str:
    """``resolve`` turns a ``checksum`` file name into a path (relative to the working directory)."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression in BUILT_INS:
            return environment.get(BUILT_INS[expression], "")
        if expression == "epoch":
            return str(int(time.time()))
        if expression == "arch":
            return arch()
        if found := ENVIRONMENT.match(expression):
            return environment.get(found.group(1), "")
        if found := CHECKSUM.match(expression):
            return file_checksum(resolve(found.group(1)))
        raise TemplateError(f"unknown cache key template {{{{ {expression} }}}}")

    return TEMPLATE.sub(one, template)
