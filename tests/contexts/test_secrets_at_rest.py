"""No context secret is stored, returned, logged or audited in plaintext; rotation keeps them readable."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx

from circlet.contexts.service import ContextService
from circlet.db.engine import Database
from tests.conftest import Account, LiveServer, postgres_dump, raw_sqlite_bytes

API = "/api/v2"
SECRET = "pl41ntext-" + uuid.uuid4().hex


async def test_database_holds_no_plaintext(client: httpx.AsyncClient, database: Database, admin: Account) -> None:
    body = {"name": "vault", "owner": {"id": admin.org_id}}
    context = (await client.post(f"{API}/context", json=body, headers=admin.headers)).json()
    put = await client.put(
        f"{API}/context/{context['id']}/environment-variable/DB_PASSWORD", json={"value": SECRET}, headers=admin.headers
    )
    assert put.status_code == 200 and SECRET not in put.text

    if database.is_sqlite:
        assert SECRET.encode() not in raw_sqlite_bytes(database.url)
        assert b"DB_PASSWORD" in raw_sqlite_bytes(database.url)  # the dump is real: names are there
    else:
        dump = await postgres_dump(database.url)
        assert SECRET not in dump and "DB_PASSWORD" in dump

    service: ContextService = client.app.state.context_service  # type: ignore[attr-defined]
    async with database.reading() as session:
        values = await service.env_var_values(session, uuid.UUID(context["id"]))
    assert values == {"DB_PASSWORD": SECRET}


def run_cli(server: LiveServer, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "circlet.cli", *args], env=server.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_logs_and_audit_never_hold_values_and_rotation_keeps_them_readable(live_server: LiveServer) -> None:
    account = live_server.admin("bootstrap", "--org", "acme", "--user", "alice")
    headers = {"Circle-Token": account["token"]}
    api = live_server.url + API
    context = httpx.post(f"{api}/context", json={"name": "ci", "owner": {"slug": "gh/acme"}}, headers=headers).json()
    for i in range(3):
        response = httpx.put(
            f"{api}/context/{context['id']}/environment-variable/KEY_{i}",
            json={"value": f"{SECRET}-{i}"},
            headers=headers,
        )
        assert response.status_code == 200

    rotated = json.loads(run_cli(live_server, "admin", "rotate-key"))
    assert rotated["resealed"] == 3
    # The running server still reads (and writes) after the rotation, with no restart.
    listed = httpx.get(f"{api}/context/{context['id']}/environment-variable", headers=headers)
    assert [item["variable"] for item in listed.json()["items"]] == ["KEY_0", "KEY_1", "KEY_2"]
    assert (
        httpx.put(
            f"{api}/context/{context['id']}/environment-variable/KEY_3", json={"value": SECRET}, headers=headers
        ).status_code
        == 200
    )

    audit = [json.loads(line) for line in run_cli(live_server, "admin", "audit").splitlines()]
    actions = [event["action"] for event in audit]
    assert "context.create" in actions and actions.count("context.env_var.create") == 4
    assert all(event["actor"] for event in audit)
    log = live_server.log_path.read_text() if live_server.log_path else ""
    everything = log + json.dumps(audit)
    assert SECRET not in everything
    assert account["token"] not in everything
    assert (
        '"path": "/api/v2/context/{context_id}/environment-variable/{env_var_name}"' in log
        or '"path":"/api/v2/context/{context_id}/environment-variable/{env_var_name}"' in log
    )
