"""Run schemathesis with the official spec against a real circlet server.

The official spec has a few faults that no correct server can satisfy; ``conformance_spec`` repairs
exactly those, each listed with its reason in docs/compatibility.md, and changes nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from circlet.openapi.spec import official_spec

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def _repair(node: Any) -> Any:
    """Two systematic faults of the official spec, fixed wherever they occur:
    ``x-nullable`` read as ``nullable``; and ``additionalProperties: false`` standing beside a
    ``oneOf``/``anyOf``/``allOf`` with no ``properties`` of its own, which no object can satisfy
    (the create-context ``owner`` and the env-var PUT response), dropped."""
    if isinstance(node, dict):
        fixed = {k: _repair(v) for k, v in node.items() if k != "x-nullable"}
        if node.get("x-nullable") is True:
            fixed["nullable"] = True
        combines = any(k in node for k in ("oneOf", "anyOf", "allOf"))
        if combines and node.get("additionalProperties") is False and "properties" not in node:
            del fixed["additionalProperties"]
        return fixed
    if isinstance(node, list):
        return [_repair(item) for item in node]
    return node


# Where the official spec omits a status that a correct server must return, we add it, here and
# in docs/compatibility.md ("Deviations from the spec"), with the reason. Nothing else is relaxed.
INVALID_INPUT_400 = {
    "description": "Invalid input (malformed UUID in the path, bad query value or body).",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
        }
    },
}
UNDOCUMENTED_400 = {
    ("post", "/context"),
    ("get", "/context"),
    ("get", "/context/{context_id}"),
    ("delete", "/context/{context_id}"),
    ("get", "/context/{context_id}/environment-variable"),
    ("put", "/context/{context_id}/environment-variable/{env_var_name}"),
    ("delete", "/context/{context_id}/environment-variable/{env_var_name}"),
    # A non-integer `limit` or a page-token we did not issue.
    ("get", "/organizations/{org_id}/groups"),
    # A URL holding a NUL character (the request middleware refuses it).
    ("get", "/organizations/{org_id}/groups/{group_id}"),
    ("delete", "/organizations/{org_id}/groups/{group_id}"),
    ("get", "/project/{provider}/{organization}/{project}/settings"),
}


def conformance_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _repair(official_spec())
    for method, path in UNDOCUMENTED_400:
        spec["paths"][path][method]["responses"].setdefault("400", INVALID_INPUT_400)
    return spec


def run_schemathesis(
    base_url: str,
    token: str,
    tags: list[str],
    workdir: Path,
    *,
    max_examples: int = 25,
    config_toml: str = "",
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(conformance_spec()))
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(spec_path),
        "--url",
        base_url + "/api/v2",
        "--checks",
        CHECKS,
        "-H",
        f"Circle-Token: {token}",
        "--max-examples",
        str(max_examples),
        "--seed",
        "1",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        *[arg for tag in tags for arg in ("--include-tag", tag)],
        *(extra or []),
    ]
    if config_toml:
        (workdir / "schemathesis.toml").write_text(config_toml)
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
