"""Shared fixtures: a real database (a SQLite file, and PostgreSQL when CIRCLET_TEST_DATABASE_URL says
where), the real app in-process over httpx, and a real ``circlet serve`` subprocess for end-to-end."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.app import create_app
from circlet.db.engine import Database, create_database
from circlet.db.migrate import upgrade_to_head
from circlet.settings import Limits, Settings, normalize_database_url
from circlet.users import service as accounts

POSTGRES_URL = os.environ.get("CIRCLET_TEST_DATABASE_URL", "")
# Runners started by tests (the embedded one of `circlet serve` too) run docker jobs on the host: the
# images the tests name (cimg/base, ...) cannot be pulled here. The container tests opt in.
NO_CONTAINER_ENGINE = {"CIRCLET_RUNNER_CONTAINER_ENGINE": "none"}
os.environ.update(NO_CONTAINER_ENGINE)
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _postgres_admin(base_url: str, *statements: str) -> None:
    """Run statements on the test server from any thread, even one with a running event loop."""
    import asyncio
    import threading

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(
            normalize_database_url(base_url).replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    worker.join()


def _database_url_named(base_url: str, name: str) -> str:
    head = normalize_database_url(base_url).rpartition("/")[0]
    return f"{head}/{name}"


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Each test starts with the usual umask (022) and leaves the process's as it found it: an app
    created in this process makes the umask 077 for good (``Settings.ensure_home``), which would
    otherwise make every later test's directories owner-only, out of a job user's reach."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database on the test server; every test gets its own copy of it."""
    if not POSTGRES_URL:
        pytest.skip("CIRCLET_TEST_DATABASE_URL is not set")
    name = f"circlet_template_{uuid.uuid4().hex[:10]}"
    _postgres_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"')
    upgrade_to_head(_database_url_named(POSTGRES_URL, name))
    yield name
    _postgres_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database for each test: a SQLite file, or a copy of the PostgreSQL template."""
    if request.param == "postgresql":
        template = request.getfixturevalue("postgres_template")
        name = f"circlet_test_{uuid.uuid4().hex[:12]}"
        _postgres_admin(POSTGRES_URL, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield _database_url_named(POSTGRES_URL, name)
        _postgres_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    path = tmp_path_factory.mktemp("db") / "circlet.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade_to_head(url)
    yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        rate_limit_per_minute=0,
        auth_cache_seconds=0,
        limits=Limits(),
    )


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = create_database(settings.resolved_database_url)
    yield db
    await db.dispose()


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, in-process, with its lifespan run (migrations, keyring, state)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://circlet.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings) as http:
        yield http


@dataclass
class Account:
    """A user in an organization with a role, and a token to call the API as them."""

    org_id: str
    org_slug: str
    user_id: str
    login: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Circle-Token": self.token}


async def make_account(
    database: Database, *, org: str | None = None, login: str | None = None, role: str = "admin"
) -> Account:
    """Create (or reuse) the org and user, set the role, mint a token: what `admin bootstrap` does."""
    org = org or f"org-{uuid.uuid4().hex[:8]}"
    login = login or f"user-{uuid.uuid4().hex[:8]}"
    async with database.writing() as session:
        organization = await accounts.ensure_org(session, org)
        user = await accounts.ensure_user(session, login)
        await accounts.add_member(session, organization, user, role)
        minted = await accounts.mint_token(session, user)
        org_json = accounts.org_json(organization)
        return Account(org_json["id"], org_json["slug"], str(user.id), login, minted.token)


@pytest.fixture
async def admin(database: Database) -> Account:
    return await make_account(database, role="admin")


def reachable_by_jobs(path: Path) -> Path:
    """Let other users pass through (not list) ``path`` and the directories above it: a runner started
    as root runs jobs as other users, who must reach their task directories under it (pytest makes its
    temporary directories owner-only)."""
    path.mkdir(parents=True, exist_ok=True)
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return path


@pytest.fixture
def shared_with_jobs() -> Iterator[Path]:
    """A directory jobs may write in and the test can read, at the same path for both: outside /tmp
    (a job run as another user has a /tmp of its own), writable by all."""
    base = Path(tempfile.mkdtemp(prefix="circlet-test-", dir="/run" if os.access("/run", os.W_OK) else None))
    base.chmod(0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A real ``circlet serve`` process on a free loopback port."""

    url: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    serve_options: tuple[str, ...] = ()

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        self.log_path = self.home / "server.log"
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "circlet.cli", "serve", "--port", port, *self.serve_options],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def stop(self, *, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=30)
        self.process = None

    def admin(self, *args: str) -> Any:
        """Run a ``circlet admin`` command against the server's database; returns its JSON."""
        import json

        done = subprocess.run(
            [sys.executable, "-m", "circlet.cli", "admin", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout) if done.stdout.strip().startswith("{") else done.stdout


def server_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    env.update({"CIRCLET_HOME": str(home), "CIRCLET_DATABASE_URL": database_url, **NO_CONTAINER_ENGINE, **extra})
    return env


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    server.start()
    yield server
    server.stop()


def raw_sqlite_bytes(url: str) -> bytes:
    """Every byte SQLite has written for this database: the file, its WAL and shared memory."""
    path = Path(url.split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def postgres_dump(url: str) -> str:
    """All rows of every table, as text, exactly as PostgreSQL returns them."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        parts = []
        for table in tables:
            rows = await connection.fetch(f'SELECT * FROM "{table["tablename"]}"')
            parts.extend(repr(dict(r)) for r in rows)
        return "\n".join(parts)
    finally:
        await connection.close()


@dataclass
class Team:
    """One organization with a member of each role, and an admin of another organization."""

    admin: Account
    member: Account
    viewer: Account
    outsider: Account

    def by_role(self, role: str) -> Account:
        return {"admin": self.admin, "member": self.member, "viewer": self.viewer, "outsider": self.outsider}[role]


@pytest.fixture
async def team(database: Database) -> Team:
    org = f"team-{uuid.uuid4().hex[:8]}"
    return Team(
        admin=await make_account(database, org=org, role="admin"),
        member=await make_account(database, org=org, role="member"),
        viewer=await make_account(database, org=org, role="viewer"),
        outsider=await make_account(database, role="admin"),
    )
