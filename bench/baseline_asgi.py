"""The baseline for bench/api_contexts.py: a bare ASGI app (no framework) with the stdlib ``sqlite3``.

It answers the two benchmarked requests the way the simplest hand-written server would, on the
same SQLite file circlet serves, with the same SQL circlet runs:

* ``GET /api/v2/context?owner-id=…[&page-token=…]``: the keyset query on ``(org_id, created_at, id)``,
  21 rows for a page of 20, the same JSON body (the page token is decoded without checking its
  signature, and the next one is not signed);
* ``PUT /api/v2/context/{id}/environment-variable/{name}`` with ``{"value": …}``: the same one-statement
  upsert in a ``BEGIN IMMEDIATE`` transaction (the value is stored as is, not sealed).

and, for bench/api_accounts.py:

* ``GET /api/v2/project/{provider}/{org}/{project}/envvar``: the same slug lookup (one probe of the unique
  (vcs_type, name_key) and (org_id, name_key) indexes) and the same select of the variables, the same
  JSON keys; the values are not unsealed (the mask is built from the stored bytes as they are);
* ``GET /api/v2/me/collaborations``: the same join of memberships and organizations for the user
  ``BASELINE_USER_ID`` (the baseline authenticates nobody), the same JSON.

No authentication, no validation beyond what it needs to run the query. One connection, used
synchronously on the event loop: with one worker and one core that is the fastest way there is.

Serve it with ``BASELINE_DB=/path/to/circlet.db uvicorn baseline_asgi:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

PAGE_SIZE = 20
LIST_FIRST = (
    "SELECT contexts.id, contexts.name, contexts.created_at FROM contexts WHERE contexts.org_id = ? "
    "ORDER BY contexts.created_at, contexts.id LIMIT ? OFFSET ?"
)
LIST_AFTER = (
    "SELECT contexts.id, contexts.name, contexts.created_at FROM contexts WHERE contexts.org_id = ? "
    "AND (contexts.created_at, contexts.id) > (?, ?) ORDER BY contexts.created_at, contexts.id LIMIT ? OFFSET ?"
)
UPSERT = (
    "INSERT INTO context_env_vars (context_id, name, key_id, ciphertext, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (context_id, name) DO UPDATE SET key_id = ?, ciphertext = ?, "
    "updated_at = ? RETURNING created_at, updated_at"
)
PROJECT_BY_NAMES = (
    "SELECT projects.id, projects.org_id, projects.name, projects.vcs_url, projects.default_branch, "
    "organizations.name, organizations.vcs_type FROM projects JOIN organizations ON organizations.id = projects.org_id "
    "WHERE organizations.vcs_type = ? AND organizations.name_key = ? AND projects.name_key = ?"
)
PROJECT_ENV_VARS = (
    "SELECT project_env_vars.name, project_env_vars.key_id, project_env_vars.ciphertext, "
    "project_env_vars.created_at FROM project_env_vars WHERE project_env_vars.project_id = ? "
    "ORDER BY project_env_vars.name"
)
COLLABORATIONS = (
    "SELECT organizations.id, organizations.vcs_type, organizations.name, organizations.avatar_url "
    "FROM organizations JOIN memberships ON memberships.org_id = organizations.id "
    "WHERE memberships.user_id = ? ORDER BY organizations.name_key, organizations.vcs_type"
)
VCS_BY_PREFIX = {"gh": "github", "github": "github", "bb": "bitbucket", "bitbucket": "bitbucket"}
SHORT_PREFIX = {"github": "gh", "bitbucket": "bb"}
JSON_HEADERS = [(b"content-type", b"application/json")]

connection = sqlite3.connect(os.environ.get("BASELINE_DB", "circlet.db"), isolation_level=None)
connection.execute("PRAGMA journal_mode=WAL")
connection.execute("PRAGMA synchronous=NORMAL")
connection.execute("PRAGMA busy_timeout=30000")


def stored_time(value: datetime) -> str:
    """How SQLAlchemy writes a naive UTC datetime into SQLite."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def api_time(stored: str) -> str:
    """``2025-01-01 00:00:09.001000`` → ``2025-01-01T00:00:09.001Z``."""
    return f"{stored[:10]}T{stored[11:23]}Z"


def list_contexts(query: dict[str, list[str]]) -> tuple[int, Any]:
    try:
        org_id = uuid.UUID(query["owner-id"][0]).hex
    except (KeyError, ValueError):
        return 400, {"message": "owner-id is required."}
    token = query.get("page-token", [None])[0]
    if token:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        _scope, created, last_id = json.loads(raw[16:])
        after = datetime.fromisoformat(created)
        if after.tzinfo is not None:
            after = after.astimezone(UTC)
        after = stored_time(after)
        rows = connection.execute(LIST_AFTER, (org_id, after, uuid.UUID(last_id).hex, PAGE_SIZE + 1, 0)).fetchall()
    else:
        rows = connection.execute(LIST_FIRST, (org_id, PAGE_SIZE + 1, 0)).fetchall()
    items = [{"id": str(uuid.UUID(i)), "name": n, "created_at": api_time(c)} for i, n, c in rows[:PAGE_SIZE]]
    next_token = None
    if len(rows) > PAGE_SIZE:
        last_id, _, last_created = rows[PAGE_SIZE - 1]
        position = json.dumps([f"contexts:{uuid.UUID(org_id)}", last_created, str(uuid.UUID(last_id))])
        next_token = base64.urlsafe_b64encode(bytes(16) + position.encode()).decode().rstrip("=")
    return 200, {"items": items, "next_page_token": next_token}


def put_env_var(context_id: str, name: str, body: bytes) -> tuple[int, Any]:
    value = json.loads(body)["value"]
    now = stored_time(datetime.now(UTC))
    ciphertext = value.encode()
    context_hex = uuid.UUID(context_id).hex
    connection.execute("BEGIN IMMEDIATE")
    try:
        created, updated = connection.execute(
            UPSERT, (context_hex, name, "baseline", ciphertext, now, now, "baseline", ciphertext, now)
        ).fetchone()
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return 200, {
        "variable": name,
        "created_at": api_time(created),
        "updated_at": api_time(updated),
        "context_id": context_id,
    }


def project_env_vars(provider: str, org: str, project: str) -> tuple[int, Any]:
    vcs_type = VCS_BY_PREFIX.get(provider.lower())
    found = connection.execute(PROJECT_BY_NAMES, (vcs_type, org.lower(), project.lower())).fetchone()
    if found is None:
        return 404, {"message": "Project not found."}
    rows = connection.execute(PROJECT_ENV_VARS, (found[0],)).fetchall()
    items = [
        {"name": name, "value": "xxxx" + ciphertext[-4:].hex(), "created-at": api_time(created)}
        for name, _key_id, ciphertext, created in rows
    ]
    return 200, {"items": items, "next_page_token": None}


def collaborations() -> tuple[int, Any]:
    user_id = uuid.UUID(os.environ["BASELINE_USER_ID"]).hex
    return 200, [
        {
            "id": str(uuid.UUID(org_id)),
            "vcs-type": vcs_type,
            "name": name,
            "avatar_url": avatar_url,
            "slug": f"{SHORT_PREFIX[vcs_type]}/{name}" if vcs_type != "circleci" else f"circleci/{uuid.UUID(org_id)}",
        }
        for org_id, vcs_type, name, avatar_url in connection.execute(COLLABORATIONS, (user_id,)).fetchall()
    ]


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path: str = scope["path"]
    parts = path.split("/")
    if scope["method"] == "GET" and path == "/api/v2/context":
        status, body = list_contexts(parse_qs(scope["query_string"].decode()))
    elif scope["method"] == "GET" and len(parts) == 8 and parts[3] == "project" and parts[7] == "envvar":
        status, body = project_env_vars(parts[4], parts[5], parts[6])
    elif scope["method"] == "GET" and path == "/api/v2/me/collaborations":
        status, body = collaborations()
    elif scope["method"] == "PUT" and len(parts) == 7 and parts[5] == "environment-variable":
        status, body = put_env_var(parts[4], parts[6], await read_body(receive))
    else:
        status, body = 404, {"message": "Not found."}
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": json.dumps(body, separators=(",", ":")).encode()})
