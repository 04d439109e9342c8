"""The admin commands, run as a user runs them: real subprocesses on a real database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from circlet.auth.tokens import TOKEN_PREFIX
from circlet.settings import normalize_database_url
from tests.conftest import LiveServer, server_env


def circlet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "circlet.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_bootstrap_creates_then_reuses(database_url: str, tmp_path: Path) -> None:
    env = server_env(tmp_path / "home", "")
    env.pop("CIRCLET_DATABASE_URL")
    first = circlet(env, "admin", "bootstrap", "--org", "acme", "--user", "alice", "--database-url", database_url)
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert set(body) == {"org", "user", "token"}
    assert set(body["org"]) == {"id", "slug", "name"} and body["org"]["slug"] == "gh/acme"
    assert set(body["user"]) == {"id", "login", "name"} and body["user"]["login"] == "alice"
    assert body["token"].startswith(TOKEN_PREFIX) and len(body["token"]) > 40

    again = json.loads(
        circlet(env, "admin", "bootstrap", "--org", "acme", "--user", "alice", "--database-url", database_url).stdout
    )
    assert again["org"] == body["org"] and again["user"] == body["user"]
    assert again["token"] != body["token"]


def test_token_create_and_revoke(live_server: LiveServer) -> None:
    live_server.admin("bootstrap", "--org", "acme", "--user", "alice")
    minted = live_server.admin("token", "create", "--user", "alice", "--label", "laptop")
    me = httpx.get(live_server.url + "/api/v2/me", headers={"Circle-Token": minted["token"]})
    assert me.json()["login"] == "alice"

    assert live_server.admin("token", "revoke", minted["id"]) == {"id": minted["id"], "revoked": True}
    # The server trusts a verified token for at most auth_cache_seconds (2 s by default).
    deadline_statuses = []
    for _ in range(40):
        status = httpx.get(live_server.url + "/api/v2/me", headers={"Circle-Token": minted["token"]}).status_code
        deadline_statuses.append(status)
        if status == 401:
            break
        time.sleep(0.1)
    assert deadline_statuses[-1] == 401


def test_operator_errors_are_json_with_exit_1(live_server: LiveServer) -> None:
    unknown_user = circlet(live_server.env, "admin", "token", "create", "--user", "nobody")
    assert unknown_user.returncode == 1
    assert json.loads(unknown_user.stderr) == {
        "error": "no user with login 'nobody'",
        "database": normalize_database_url(live_server.env["CIRCLET_DATABASE_URL"]),
    }
    bad_id = circlet(live_server.env, "admin", "token", "revoke", "not-an-id")
    assert bad_id.returncode == 1 and "not a token id" in json.loads(bad_id.stderr)["error"]
    unknown_token = circlet(live_server.env, "admin", "token", "revoke", "00000000-0000-0000-0000-000000000000")
    assert unknown_token.returncode == 1 and "no active token" in json.loads(unknown_token.stderr)["error"]


def test_audit_records_tokens_and_contexts(live_server: LiveServer) -> None:
    account = live_server.admin("bootstrap", "--org", "acme", "--user", "alice")
    httpx.post(
        live_server.url + "/api/v2/context",
        json={"name": "audited", "owner": {"id": account["org"]["id"]}},
        headers={"Circle-Token": account["token"]},
    )
    lines = circlet(live_server.env, "admin", "audit").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    by_action = {event["action"]: event for event in events}
    assert {"org.create", "user.create", "org.member.set", "token.create", "context.create"} <= set(by_action)
    assert by_action["context.create"]["actor"] == "alice"
    assert by_action["context.create"]["details"] == {"name": "audited"}
    assert all(account["token"] not in line for line in lines)


def test_circlet_runner_does_not_load_the_server() -> None:
    """A runner machine runs only the agent: ``circlet runner`` must not import the server's stack."""
    probe = (
        "import sys\n"
        "sys.argv = ['circlet', 'runner', '--help']\n"
        "from circlet.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "loaded = sorted(name for name in ('fastapi', 'sqlalchemy', 'circlet.app') if name in sys.modules)\n"
        "print('LOADED', loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "--resource-class" in result.stdout
    assert "LOADED []" in result.stdout


def test_admin_commands_say_where_the_data_is_and_make_no_home(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "no-such-home"
    env = server_env(home, "")
    env.pop("CIRCLET_DATABASE_URL")
    refused = circlet(env, "admin", "user", "create", "ada")
    assert refused.returncode == 1
    error = json.loads(refused.stderr)
    assert f"no circlet data directory at {home}" in error["error"] and "CIRCLET_HOME" in error["error"]
    assert error["database"] == f"sqlite+aiosqlite:///{home}/circlet.db"
    assert not home.exists()

    done = circlet(env, "admin", "user", "create", "ada", "--database-url", database_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["login"] == "ada"
    assert done.stderr.startswith("circlet: database ") and not home.exists()


def test_serve_help_shows_every_default() -> None:
    done = circlet({**server_env(Path("/nonexistent"), ""), "COLUMNS": "200"}, "serve", "--help")
    assert done.returncode == 0
    assert "[default: ($CIRCLET_HOST, else 127.0.0.1)]" in done.stdout
    assert "[default: ($CIRCLET_PORT, else 8080)]" in done.stdout
    assert "Address to listen on ." not in done.stdout


def test_the_database_a_command_names_hides_its_password() -> None:
    from circlet.cli import data_location
    from circlet.settings import Settings

    settings = Settings(database_url="postgresql://ops:hunter2@db.internal:5432/circlet")
    assert data_location(settings) == "postgresql+asyncpg://ops:***@db.internal:5432/circlet"
