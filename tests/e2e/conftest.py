"""Fixtures of the end-to-end tests that start one server for a whole module (a server and its
runners take a second or two to start; a module's tests share them and keep to their own projects)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from circlet.db.migrate import upgrade_to_head
from tests.conftest import BACKENDS, POSTGRES_URL, _database_url_named, _postgres_admin


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``database_url``, once per module: a migrated SQLite file, or a copy of the PostgreSQL template."""
    if request.param == "postgresql":
        template = request.getfixturevalue("postgres_template")
        name = f"circlet_e2e_{uuid.uuid4().hex[:12]}"
        _postgres_admin(POSTGRES_URL, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        yield _database_url_named(POSTGRES_URL, name)
        _postgres_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'circlet.db'}"
    upgrade_to_head(url)
    yield url
