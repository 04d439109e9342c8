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
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch"})


@cache
def official_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(OFFICIAL_SPEC.read_text())
    return spec


def implemented_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, official path) of every operation of the official spec that the app serves.

    Routes carry the spec's ``operationId``; matching on it (not on the path) covers routes whose
    path had to be spelled differently, e.g. the spec's ``{project-slug}`` as three segments."""
    served_ids = {
        operation.get("operationId")
        for path, item in app.openapi()["paths"].items()
        if path.startswith(API_PREFIX + "/")
        for operation in item.values()
    }
    return {
        (method, path)
        for path, item in official_spec()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("operationId") in served_ids
    }


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
            if key not in HTTP_METHODS or (key, path) in implemented
        }
        if any(key in kept for key in HTTP_METHODS):
            paths[path] = kept
    spec["paths"] = paths
    return spec
