"""circlet's own OpenAPI document: the official spec, cut down to the operations implemented here."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from circlet.http.routing import API_PREFIX

OFFICIAL_SPEC = Path(__file__).with_name("circleci-api-v2.openapi.json")


@cache
def official_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(OFFICIAL_SPEC.read_text())
    return spec


def implemented_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path under /api/v2) of every operation the app serves, read from the app's own
    generated schema (included routers are not flattened into ``app.routes``)."""
    operations = set()
    for path, item in app.openapi()["paths"].items():
        if path.startswith(API_PREFIX + "/"):
            operations.update((method, path[len(API_PREFIX) :]) for method in item)
    return operations


def served_spec(app: FastAPI, server_url: str) -> dict[str, Any]:
    official = official_spec()
    implemented = implemented_operations(app)
    spec = copy.deepcopy({k: v for k, v in official.items() if k != "paths"})
    spec["servers"] = [{"url": server_url}]
    paths: dict[str, Any] = {}
    for path, item in official["paths"].items():
        kept = {
            key: copy.deepcopy(value)
            for key, value in item.items()
            if key not in {"get", "put", "post", "delete", "patch"} or (key, path) in implemented
        }
        if any(key in kept for key in ("get", "put", "post", "delete", "patch")):
            paths[path] = kept
    spec["paths"] = paths
    return spec
